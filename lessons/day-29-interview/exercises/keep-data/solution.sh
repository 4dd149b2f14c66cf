#!/bin/sh
# Reference solution. The test suite runs it step by step, grading after each `# task:` line.
set -e
# task: write
docker volume create guestbook
docker run --name writer --mount source=guestbook,target=/data busybox sh -c 'echo first entry >> /data/entries.txt'
# task: remove-writer
docker rm writer
# task: read-back
docker run --name reader --mount source=guestbook,target=/data busybox cat /data/entries.txt
