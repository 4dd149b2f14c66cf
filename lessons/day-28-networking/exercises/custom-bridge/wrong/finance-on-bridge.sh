#!/bin/sh
# finance stays on the default bridge; auditor joins secure-net and cannot find it.
# red: finance
set -e
docker run -d --name login busybox sleep 3600
docker run -d --name logout busybox sleep 3600
docker network create secure-net
docker run -d --name finance busybox sleep 3600
docker run -d --name auditor --network secure-net busybox sleep 3600
