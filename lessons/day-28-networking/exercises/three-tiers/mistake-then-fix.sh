#!/bin/sh
# backend on backend-net only at first; then connected to frontend-net.
# red: tiers
set -e
docker network create frontend-net
docker network create backend-net
docker run -d --name frontend --network frontend-net busybox sleep 3600
docker run -d --name db --network backend-net busybox sleep 3600
docker run -d --name backend --network backend-net busybox sleep 3600
# fix
set -e
docker network connect frontend-net backend
