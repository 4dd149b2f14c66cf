#!/bin/sh
# Reference solution. The test suite runs it step by step, grading after each `# task:` line.
set -e
# task: old-job
docker rm -v old-job
# task: prune
docker volume prune -f --filter 'label!=keep'
# task: rm-flag
docker run --rm --name tidy -v /work busybox sh -c 'echo temp > /work/file'
