#!/bin/sh
# First a named volume at /work (kept after tidy goes), then tidy done right; along the way the
# learner makes a volume of their own whose name happens to be 64 hex digits. Neither may block.
# red: rm-flag
set -e
docker rm -v old-job
docker volume prune -f --filter 'label!=keep'
docker run --rm --name tidy -v keep-me:/work busybox sh -c 'echo temp > /work/file'
# fix
set -e
docker volume create $(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
sleep 1
docker run --rm --name tidy -v /work busybox sh -c 'echo temp > /work/file'
