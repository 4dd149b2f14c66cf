#!/bin/sh
# Reference solution. The test suite runs it step by step, grading after each `# task:` line.
set -e
# task: registry
docker run -d --name registry -p 5000:5000 registry:2
for i in $(seq 1 30); do curl -fs localhost:5000/v2/ && break; sleep 0.5; done
# task: push
docker pull -q busybox
docker tag busybox localhost:5000/tools/busybox:1
docker push localhost:5000/tools/busybox:1
# task: pull-back
docker rmi localhost:5000/tools/busybox:1
docker pull localhost:5000/tools/busybox:1
docker run --name from-registry localhost:5000/tools/busybox:1 echo pulled
