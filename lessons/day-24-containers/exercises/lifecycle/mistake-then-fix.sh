#!/bin/sh
# Starts with `docker run -d` (the create task cannot pass), then removes it and does it right.
# red: create
set -e
docker run -d --name box busybox sleep 3600
# fix
set -e
docker rm -f box
docker create --name box busybox sleep 3600
# A learner looks at the page before starting it: the create counts once Docker is idle.
sleep 5
docker start box
docker pause box
docker unpause box
docker stop -t 1 box
docker start box
docker restart -t 1 box
docker kill box
docker rm box
