#!/bin/sh
# Reference solution. The test suite runs it step by step, grading after each `# task:` line.
set -e
# task: create
docker create --name box busybox sleep 3600
# task: start-pause
docker start box
docker pause box
docker unpause box
# task: stop
docker stop -t 1 box
docker start box
docker restart -t 1 box
docker kill box
# task: remove
docker rm box
