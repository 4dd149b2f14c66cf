#!/bin/sh
# Reference solution. The test suite runs it step by step, grading after each `# task:` line.
set -e
# task: networks
docker network create frontend-net
docker network create backend-net
# task: tiers
docker run -d --name frontend --network frontend-net busybox sleep 3600
docker run -d --name db --network backend-net busybox sleep 3600
docker run -d --name backend --network backend-net busybox sleep 3600
docker network connect frontend-net backend
# task: matrix
docker exec frontend ping -c 1 backend
docker exec backend ping -c 1 db
! docker exec frontend ping -c 1 -W 1 db
