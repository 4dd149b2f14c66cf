#!/bin/sh
# No HEALTHCHECK: Docker never says healthy or unhealthy.
# red: image
set -e
mkdir -p ~/health
printf 'FROM busybox\nCMD ["sleep", "3600"]\n' > ~/health/Dockerfile
docker build -q -t health:1 ~/health
docker run -d --name sick health:1
docker run -d --name fine health:1 sh -c 'touch /tmp/ready && exec sleep 3600'
sleep 3
