#!/bin/sh
# Reference solution. The test suite runs it step by step, grading after each `# task:` line.
set -e
# task: host
docker run -d --name hostweb --network host nginx
for i in $(seq 1 30); do curl -fs localhost:80 >/dev/null && break; sleep 0.5; done
# task: none
docker run -d --name offline --network none busybox sleep 3600
docker exec offline ip addr > ~/offline-ip.txt
# task: compare
docker run --rm --network host busybox ip addr > ~/host-ip.txt
