#!/bin/sh
# victim exits with 137 by itself: nobody killed it.
# red: killed
set -e
docker run --name greedy --memory 32m busybox sh -c 'a=x; while true; do a=$a$a; done' || true
docker run --name victim busybox sh -c 'exit 137' || true
