#!/bin/sh
# resilient without a policy at first; then given one with docker update and started again.
# red: comes-back
set -e
docker run -d --name fragile busybox sh -c 'sleep 1; exit 1'
docker wait fragile
docker run -d --name resilient busybox sh -c 'sleep 1; exit 1'
docker wait resilient
# fix
set -e
docker update --restart on-failure resilient
docker start resilient
for i in $(seq 1 60); do
  [ "$(docker inspect resilient --format '{{.RestartCount}}')" -ge 2 ] && break
  sleep 0.5
done
docker stop -t 1 resilient
sleep 2
