#!/bin/sh
# Empties the volume by recreating it; the reader writes the line back and prints it.
# red: read-back
set -e
docker volume create guestbook
docker run --name writer --mount source=guestbook,target=/data busybox sh -c 'echo first entry >> /data/entries.txt'
docker rm writer
docker volume rm guestbook
docker volume create guestbook
docker run --name reader --mount source=guestbook,target=/data busybox sh -c 'echo first entry >> /data/entries.txt; cat /data/entries.txt'
