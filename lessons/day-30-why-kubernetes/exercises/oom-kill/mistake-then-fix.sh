#!/bin/sh
# greedy without a memory limit, killed by hand; then replaced by one the kernel kills.
# red: oom
set -e
docker run -d --name greedy busybox sleep 3600
docker kill greedy
# fix
set -e
docker rm greedy
docker run --name greedy --memory 32m busybox sh -c 'a=x; while true; do a=$a$a; done' || true
docker run -d --name victim busybox sleep 3600
docker kill victim
docker wait victim || true
