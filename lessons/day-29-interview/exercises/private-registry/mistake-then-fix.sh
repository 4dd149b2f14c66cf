#!/bin/sh
# The volume mounted at the wrong path; then the registry replaced (the push done again).
# red: run-registry
set -e
docker run -d --name registry -p 5000:5000 -v registry-data:/data registry:2
for _ in $(seq 30); do curl -fs http://localhost:5000/v2/ >/dev/null && break; sleep 1; done
# fix
set -e
docker rm -f registry
docker run -d --name registry -p 5000:5000 --mount source=registry-data,target=/var/lib/registry registry:2
for _ in $(seq 30); do curl -fs http://localhost:5000/v2/ >/dev/null && break; sleep 1; done
docker pull -q busybox
docker tag busybox localhost:5000/interview/hello:1.0
docker push localhost:5000/interview/hello:1.0
docker image rm localhost:5000/interview/hello:1.0
docker pull localhost:5000/interview/hello:1.0
