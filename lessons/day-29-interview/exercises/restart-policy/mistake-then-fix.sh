#!/bin/sh
# Saves only stdout (the crash is on stderr); then both.
# red: diagnose
set -e
docker wait worker
docker logs worker > ~/worker.log 2>/dev/null
# fix
set -e
docker logs worker > ~/worker.log 2>&1
docker update --restart on-failure worker
docker start worker
for _ in $(seq 60); do
  [ "$(docker inspect worker --format '{{.RestartCount}}')" -ge 2 ] && break
  sleep 1
done
