#!/bin/sh
# Pushes busybox under another repository name.
# red: push
set -e
docker run -d --name registry -p 5000:5000 registry:2
for i in $(seq 1 30); do curl -fs localhost:5000/v2/ && break; sleep 0.5; done
docker pull -q busybox
docker tag busybox localhost:5000/busybox:1
docker push localhost:5000/busybox:1
