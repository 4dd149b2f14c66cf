#!/bin/sh
# Reference solution. The test suite runs it step by step, grading after each `# task:` line.
# (Shorter sleeps than the brief suggests, so the test does not wait long.)
set -e
# task: stays-down
docker run -d --name fragile busybox sh -c 'sleep 1; exit 1'
docker wait fragile
# task: comes-back
docker run -d --name resilient --restart on-failure busybox sh -c 'sleep 1; exit 1'
for i in $(seq 1 60); do
  [ "$(docker inspect resilient --format '{{.RestartCount}}')" -ge 2 ] && break
  sleep 0.5
done
# task: stop-wins
docker stop -t 1 resilient
sleep 2
