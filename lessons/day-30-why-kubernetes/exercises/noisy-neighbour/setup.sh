#!/bin/sh
# A "batch job" that spins on the CPU and has no limits at all, next to a web server.
# (Started with one CPU's worth so it cannot hog both of a small host's cores.)
set -e
docker run -d --name hog --cpus 1 busybox sh -c 'while :; do :; done' >/dev/null
