#!/bin/sh
# Reference solution. The test suite runs it step by step, grading after each `# task:` line.
set -e
# task: build
cat > ~/greeter/Dockerfile <<'DOCKERFILE'
FROM busybox
ENTRYPOINT ["echo", "Hello,"]
CMD ["world"]
DOCKERFILE
docker build -t greeter:1 ~/greeter
# task: run-default
docker run greeter:1
# task: override-cmd
docker run greeter:1 docker
# task: override-entrypoint
docker run --entrypoint date greeter:1
