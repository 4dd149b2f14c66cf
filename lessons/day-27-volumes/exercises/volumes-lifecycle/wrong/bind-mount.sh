#!/bin/sh
# Writes through a bind mount of a host folder: nothing reaches the volume.
# red: write
set -e
docker volume create app-data
mkdir -p ~/data
docker run --name writer -v ~/data:/data busybox sh -c 'echo hello > /data/greeting.txt'
