#!/bin/sh
# tidy gets a named volume, removed by hand afterwards: nothing was removed with the container.
# red: rm-flag
set -e
docker rm -v old-job
docker volume prune -f --filter 'label!=keep'
docker run --name tidy -v tidy-work:/work busybox sh -c 'echo temp > /work/file'
docker rm -v tidy
docker volume rm tidy-work
