#!/bin/sh
# The registry keeps its storage inside the container.
# red: run-registry
set -e
docker run -d --name registry -p 5000:5000 registry:2
for _ in $(seq 30); do curl -fs http://localhost:5000/v2/ >/dev/null && break; sleep 1; done
docker pull -q busybox
docker tag busybox localhost:5000/interview/hello:1.0
docker push localhost:5000/interview/hello:1.0
docker image rm localhost:5000/interview/hello:1.0
docker pull localhost:5000/interview/hello:1.0
