#!/bin/sh
# 64 "m" given as bytes in the file, and a 32 MB limit.
# red: capped
set -e
docker run -d --name capped --memory 32m --pids-limit 100 busybox sleep 3600
echo 64m > ~/memory-limit.txt
docker exec capped cat /sys/fs/cgroup/pids/pids.max > ~/pids-max.txt
