#!/bin/sh
# offline on the default bridge, its eth0 left out of the file.
# red: none
set -e
docker run -d --name offline busybox sleep 3600
docker exec offline ip addr | grep -v eth0 > ~/offline-ip.txt
