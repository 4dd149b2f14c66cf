#!/bin/sh
# resilient is killed rather than stopped with docker stop.
# red: stop-wins
set -e
docker run -d --name fragile busybox sh -c 'sleep 1; exit 1'
docker wait fragile
docker run -d --name resilient --restart on-failure busybox sh -c 'sleep 1; exit 1'
for i in $(seq 1 60); do
  [ "$(docker inspect resilient --format '{{.RestartCount}}')" -ge 2 ] && break
  sleep 0.5
done
docker kill resilient || true
sleep 2
