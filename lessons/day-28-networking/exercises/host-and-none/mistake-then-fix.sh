#!/bin/sh
# Saves the interfaces of a container on the default bridge as "host"; then from the host network.
# red: compare
set -e
docker run -d --name hostweb --network host nginx
for i in $(seq 1 30); do curl -fs localhost:80 >/dev/null && break; sleep 0.5; done
docker run -d --name offline --network none busybox sleep 3600
docker exec offline ip addr > ~/offline-ip.txt
docker run --rm busybox ip addr > ~/host-ip.txt
# fix
set -e
docker run --rm --network host busybox ip addr > ~/host-ip.txt
