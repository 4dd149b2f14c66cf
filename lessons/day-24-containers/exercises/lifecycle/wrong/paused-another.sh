#!/bin/sh
# Pauses and unpauses a second container instead of box.
# red: start-pause
set -e
docker create --name box busybox sleep 3600
sleep 3
docker start box
docker run -d --name box2 busybox sleep 3600
docker pause box2
docker unpause box2
