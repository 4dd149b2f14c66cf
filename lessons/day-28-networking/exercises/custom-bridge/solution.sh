#!/bin/sh
# Reference solution. The test suite runs it step by step, grading after each `# task:` line.
set -e
# task: default-bridge
docker run -d --name login busybox sleep 3600
docker run -d --name logout busybox sleep 3600
docker exec login ping -c 1 "$(docker inspect logout --format '{{.NetworkSettings.IPAddress}}')"
! docker exec login ping -c 1 -W 1 logout
docker network create secure-net
# task: finance
docker run -d --name finance --network secure-net busybox sleep 3600
# task: login-isolated
address=$(docker inspect finance --format '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}')
! docker exec login ping -c 1 -W 1 "$address"
# task: auditor-by-name
docker run -d --name auditor --network secure-net busybox sleep 3600
docker exec auditor ping -c 1 finance
