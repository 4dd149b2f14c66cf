#!/bin/sh
# Reference solution. The test suite runs it step by step, grading after each `# task:` line.
set -e
# task: clean-exit
docker run --name ok busybox true
# task: killed
docker run -d --name sleeper busybox sleep 3600
docker kill sleeper
# task: oom
docker run --name hog --memory 16m --memory-swap 16m busybox sh -c 'a=x; while true; do a=$a$a; done' || true
docker inspect hog --format '{{.State.OOMKilled}} {{.State.ExitCode}}'
# task: where-recorded
docker inspect hog --format '{{json .State}}' > ~/hog-state.json
