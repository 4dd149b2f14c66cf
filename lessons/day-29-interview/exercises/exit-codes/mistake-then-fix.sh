#!/bin/sh
# Saves only the OOMKilled field, not the state as JSON; then the whole state.
# red: where-recorded
set -e
docker run --name ok busybox true
docker run -d --name sleeper busybox sleep 3600
docker kill sleeper
docker run --name hog --memory 16m --memory-swap 16m busybox sh -c 'a=x; while true; do a=$a$a; done' || true
docker inspect hog --format '{{.State.OOMKilled}}' > ~/hog-state.json
# fix
set -e
docker inspect hog --format '{{json .State}}' > ~/hog-state.json
