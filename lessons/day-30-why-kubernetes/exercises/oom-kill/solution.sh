#!/bin/sh
# Reference solution. The test suite runs it step by step, grading after each `# task:` line.
set -e
# task: oom
docker run --name greedy --memory 32m busybox sh -c 'a=x; while true; do a=$a$a; done' || echo "greedy exited with $?"
docker inspect greedy --format '{{.State.ExitCode}} {{.State.OOMKilled}}'
# task: killed
docker run -d --name victim busybox sleep 3600
docker kill victim
docker wait victim || true
