#!/bin/sh
# finance first on the default bridge; then moved onto secure-net.
# red: finance
set -e
docker run -d --name login busybox sleep 3600
docker run -d --name logout busybox sleep 3600
docker network create secure-net
docker run -d --name finance busybox sleep 3600
# fix
set -e
docker network connect secure-net finance
docker network disconnect bridge finance
docker run -d --name auditor --network secure-net busybox sleep 3600
