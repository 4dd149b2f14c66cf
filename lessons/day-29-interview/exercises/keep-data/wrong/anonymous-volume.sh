#!/bin/sh
# The writer writes into an anonymous volume: nothing named guestbook holds the data.
# red: write
set -e
docker run --name writer -v /data busybox sh -c 'echo first entry >> /data/entries.txt'
docker rm writer
docker volume create guestbook
docker run --name reader --mount source=guestbook,target=/data busybox sh -c 'cat /data/entries.txt || echo first entry'
