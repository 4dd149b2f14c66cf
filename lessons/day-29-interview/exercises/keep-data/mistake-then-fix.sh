#!/bin/sh
# The reader mounts the volume at the wrong path; then a new reader mounts it at /data.
# red: read-back
set -e
docker volume create guestbook
docker run --name writer --mount source=guestbook,target=/data busybox sh -c 'echo first entry >> /data/entries.txt'
docker rm writer
docker run --name reader --mount source=guestbook,target=/mnt busybox cat /mnt/entries.txt
# fix
set -e
docker rm reader
docker run --name reader --mount source=guestbook,target=/data busybox cat /data/entries.txt
