#!/bin/sh
# Runs capped without limits first, then replaces it.
# red: capped
set -e
docker run -d --name capped busybox sleep 3600
docker exec capped cat /sys/fs/cgroup/memory/memory.limit_in_bytes > ~/memory-limit.txt
# fix
set -e
docker rm -f capped
docker run -d --name capped --memory 64m --pids-limit 100 busybox sleep 3600
docker exec capped cat /sys/fs/cgroup/memory/memory.limit_in_bytes > ~/memory-limit.txt
docker exec capped cat /sys/fs/cgroup/pids/pids.max > ~/pids-max.txt
