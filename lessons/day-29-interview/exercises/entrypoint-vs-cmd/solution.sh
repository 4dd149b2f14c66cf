#!/bin/sh
# Reference solution. The test suite runs it step by step, grading after each `# task:` line.
set -e
# task: override-cmd
docker run --name weekly report:1 weekly
# task: override-entrypoint
docker run --name peek --entrypoint cat report:1 /usr/local/bin/report
# task: new-default
mkdir -p ~/report2
printf 'FROM report:1\nCMD ["monthly"]\n' > ~/report2/Dockerfile
docker build -q -t report:2 ~/report2
docker run report:2
