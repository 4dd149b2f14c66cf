#!/bin/sh
# Removes and recreates the volume before reading: the reader prints "hello", and even writes
# it back, but nothing outlived the writer.
# red: outlives
set -e
docker volume create app-data
docker run --name writer --mount type=volume,source=app-data,target=/data busybox sh -c 'echo hello > /data/greeting.txt'
sleep 4
docker rm writer
docker volume rm app-data
docker volume create app-data
docker run --name reader -v app-data:/data busybox sh -c 'echo hello > /data/greeting.txt; cat /data/greeting.txt'
