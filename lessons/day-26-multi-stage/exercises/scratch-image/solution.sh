#!/bin/sh
# Reference solution. The test suite runs it step by step, grading after each `# task:` line.
set -e
# task: single-stage
mkdir -p ~/fat
cat > ~/fat/Dockerfile <<'DOCKERFILE'
FROM busybox
RUN mkdir /app && echo hello > /app/message.txt
DOCKERFILE
docker build -t fat:1 ~/fat
# task: multi-stage
mkdir -p ~/slim
cat > ~/slim/Dockerfile <<'DOCKERFILE'
FROM busybox AS build
RUN mkdir /app && echo hello > /app/message.txt

FROM scratch
COPY --from=build /app/message.txt /app/message.txt
DOCKERFILE
docker build -t slim:1 ~/slim
# task: smaller
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}'
