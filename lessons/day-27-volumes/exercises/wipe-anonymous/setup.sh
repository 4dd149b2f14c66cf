#!/bin/sh
# Leaves the kind of mess a few days of work leave behind: anonymous volumes from finished jobs,
# a stopped container still holding one, a named volume in use and a named backup volume in use by
# nobody (which `docker volume prune` on Docker 20.10 would delete too).
set -e
for i in 1 2 3; do
  docker run --name "job-$i" -v /cache busybox sh -c "echo run $i > /cache/out.txt" >/dev/null
  docker rm "job-$i" >/dev/null
done
docker run --name old-job --mount type=volume,target=/scratch,volume-label=job=old-job busybox sh -c 'echo leftovers > /scratch/tmp.txt' >/dev/null
docker volume create --label keep=true backups >/dev/null
docker run --rm -v backups:/backups busybox sh -c 'echo "nightly dump" > /backups/db.sql'
docker volume create db-data >/dev/null
docker run -d --name db -v db-data:/var/lib/db busybox sleep 86400 >/dev/null
