#!/bin/sh
# The registry runs without -p: nothing answers on port 5000.
# red: registry
set -e
docker run -d --name registry registry:2
sleep 2
docker pull -q busybox
docker tag busybox localhost:5000/tools/busybox:1
docker push localhost:5000/tools/busybox:1 || true
