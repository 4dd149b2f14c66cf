#!/bin/sh
# Reference solution. The test suite runs it step by step, grading after each `# task:` line.
set -e
# task: tame
docker stats --no-stream hog
docker update --cpus 0.2 --memory 64m --memory-swap 64m hog
# task: limited-web
docker run -d --name web --cpus 0.5 --memory 128m --pids-limit 100 nginx
