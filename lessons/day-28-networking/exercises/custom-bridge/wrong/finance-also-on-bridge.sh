#!/bin/sh
# Isolated for a moment, then finance is connected to the default bridge as well: login reaches it.
# red: login-isolated
set -e
docker run -d --name login busybox sleep 3600
docker run -d --name logout busybox sleep 3600
docker network create secure-net
docker run -d --name finance --network secure-net busybox sleep 3600
docker run -d --name auditor --network secure-net busybox sleep 3600
sleep 3
docker network connect bridge finance
