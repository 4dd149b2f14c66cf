#!/bin/sh
# Pushes, and stops there: the local copy was never removed and pulled back.
# red: pull-back
set -e
docker run -d --name registry -p 5000:5000 --mount source=registry-data,target=/var/lib/registry registry:2
for _ in $(seq 30); do curl -fs http://localhost:5000/v2/ >/dev/null && break; sleep 1; done
docker pull -q busybox
docker tag busybox localhost:5000/interview/hello:1.0
docker push localhost:5000/interview/hello:1.0
