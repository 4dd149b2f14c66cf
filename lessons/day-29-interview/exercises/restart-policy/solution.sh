#!/bin/sh
# Reference solution. The test suite runs it step by step, grading after each `# task:` line.
set -e
# task: diagnose
docker wait worker
docker ps -a --filter name=worker
docker logs worker > ~/worker.log 2>&1
# task: policy
docker update --restart on-failure worker
docker start worker
for _ in $(seq 60); do
  [ "$(docker inspect worker --format '{{.RestartCount}}')" -ge 2 ] && break
  sleep 1
done
docker inspect worker --format 'restarts: {{.RestartCount}}'
