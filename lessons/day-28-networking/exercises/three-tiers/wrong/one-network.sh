#!/bin/sh
# All three on one network: frontend reaches db.
# red: tiers
set -e
docker network create frontend-net
docker network create backend-net
docker run -d --name frontend --network backend-net busybox sleep 3600
docker run -d --name db --network backend-net busybox sleep 3600
docker run -d --name backend --network backend-net busybox sleep 3600
