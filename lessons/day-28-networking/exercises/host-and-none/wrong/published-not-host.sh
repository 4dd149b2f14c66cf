#!/bin/sh
# Publishes port 80 from the default bridge instead of using the host network.
# red: host
set -e
docker run -d --name hostweb -p 80:80 nginx
for i in $(seq 1 30); do curl -fs localhost:80 >/dev/null && break; sleep 0.5; done
