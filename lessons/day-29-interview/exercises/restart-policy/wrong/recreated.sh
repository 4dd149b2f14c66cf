#!/bin/sh
# Updates the old worker, then replaces it with a new one that has the policy from the start:
# the worker there now was never given its policy with docker update.
# red: policy
set -e
docker wait worker
docker logs worker > ~/worker.log 2>&1
docker update --restart on-failure worker
docker rm -f worker
docker run -d --name worker --restart on-failure busybox sh -c 'echo working; sleep 1; echo crashed >&2; exit 1'
for _ in $(seq 60); do
  [ "$(docker inspect worker --format '{{.RestartCount}}')" -ge 2 ] && break
  sleep 1
done
