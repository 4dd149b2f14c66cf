#!/bin/sh
# Writes with -v where the task asks for --mount; then removes that writer and does it again.
# red: write
set -e
docker volume create app-data
docker run --name writer -v app-data:/data busybox sh -c 'echo hello > /data/greeting.txt'
# fix
set -e
docker rm writer
docker run --name writer --mount type=volume,source=app-data,target=/data busybox sh -c 'echo hello > /data/greeting.txt'
sleep 5
docker rm writer
docker run --name reader -v app-data:/data busybox cat /data/greeting.txt
sleep 5
! docker volume rm app-data 2> ~/in-use.txt
docker rm reader
docker volume rm app-data
