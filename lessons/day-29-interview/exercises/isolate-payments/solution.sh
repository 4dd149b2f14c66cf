#!/bin/sh
# Reference solution. The test suite runs it step by step, grading after each `# task:` line.
set -e
# task: network
docker network create payments-net
# task: move-payments
docker network connect payments-net payments
docker network disconnect bridge payments
# task: login-cut-off
ip=$(docker inspect payments --format '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}')
! docker exec login ping -c 1 -W 1 "$ip"
# task: api-reaches-payments
docker run -d --name api --network payments-net busybox sleep 3600
docker exec api ping -c 1 -W 2 payments
