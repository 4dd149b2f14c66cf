#!/bin/sh
# Reference solution. The test suite runs it step by step, grading after each `# task:` line.
set -e
# task: network
docker network create finance-net
# task: finance
docker run -d --name finance --network finance-net busybox sleep 3600
# task: login-isolated
docker run -d --name login busybox sleep 3600
address=$(docker inspect finance --format '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}')
! docker exec login ping -c 1 -W 1 "$address"
# task: auditor-by-name
docker run -d --name auditor --network finance-net busybox sleep 3600
docker exec auditor ping -c 1 finance
