#!/bin/sh
# `docker run -d` creates and starts in one go: the container is never left created-but-not-started,
# even though a grade taken between its create and start events would have seen it so.
# red: create
set -e
docker run -d --name box busybox sleep 3600
docker pause box
docker unpause box
docker stop -t 1 box
docker start box
docker restart -t 1 box
docker kill box
docker rm box
