#!/bin/sh
# fragile gets a restart policy too, so it does not stay down.
# red: stays-down
set -e
docker run -d --name fragile --restart on-failure:1 busybox sh -c 'sleep 1; exit 1'
docker run -d --name resilient --restart on-failure busybox sh -c 'sleep 1; exit 1'
for i in $(seq 1 60); do
  [ "$(docker inspect resilient --format '{{.RestartCount}}')" -ge 2 ] && break
  sleep 0.5
done
docker stop -t 1 resilient
