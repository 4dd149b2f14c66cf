#!/bin/sh
# Reference solution. The test suite runs it step by step, grading after each `# task:` line.
set -e
# task: create
docker volume create app-data
# task: write
docker run --name writer --mount type=volume,source=app-data,target=/data busybox sh -c 'echo hello > /data/greeting.txt'
# task: outlives
docker rm writer
docker run --name reader -v app-data:/data busybox cat /data/greeting.txt
# task: remove
! docker volume rm app-data 2> ~/in-use.txt
docker rm reader
docker volume rm app-data
