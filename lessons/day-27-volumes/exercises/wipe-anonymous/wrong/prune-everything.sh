#!/bin/sh
# `docker volume prune` on Docker 20.10 takes the unused named volume `backups` too.
# red: prune
set -e
docker rm -v old-job
docker volume prune -f
docker run --rm --name tidy -v /work busybox sh -c 'echo temp > /work/file'
