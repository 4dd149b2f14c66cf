#!/bin/sh
# greedy is killed with docker kill: 137, but not an OOM kill.
# red: oom
set -e
docker run -d --name greedy --memory 32m busybox sleep 3600
docker kill greedy
docker run -d --name victim busybox sleep 3600
docker kill victim
