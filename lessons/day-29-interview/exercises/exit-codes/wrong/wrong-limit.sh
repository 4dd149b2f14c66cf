#!/bin/sh
# The OOM kill happens, but under a 32 MB limit instead of 16 MB.
# red: oom
set -e
docker run --name hog --memory 32m --memory-swap 32m busybox sh -c 'a=x; while true; do a=$a$a; done' || true
docker inspect hog --format '{{json .State}}' > ~/hog-state.json
