#!/bin/sh
# Runs from-registry from the local tag without removing and pulling it back first; then does it right.
# red: pull-back
set -e
docker run -d --name registry -p 5000:5000 registry:2
for i in $(seq 1 30); do curl -fs localhost:5000/v2/ && break; sleep 0.5; done
docker pull -q busybox
docker tag busybox localhost:5000/tools/busybox:1
docker push localhost:5000/tools/busybox:1
docker run --name from-registry localhost:5000/tools/busybox:1 echo pulled
# fix
set -e
docker rm from-registry
docker rmi localhost:5000/tools/busybox:1
docker pull localhost:5000/tools/busybox:1
docker run --name from-registry localhost:5000/tools/busybox:1 echo pulled
