#!/bin/sh
# db also on frontend-net: its backend-net address (first by name) is out of frontend's reach,
# its frontend-net address is not.
# red: matrix
set -e
docker network create frontend-net
docker network create backend-net
docker run -d --name frontend --network frontend-net busybox sleep 3600
docker run -d --name db --network backend-net busybox sleep 3600
docker run -d --name backend --network backend-net busybox sleep 3600
docker network connect frontend-net backend
docker network connect frontend-net db
