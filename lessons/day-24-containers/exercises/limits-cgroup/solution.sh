#!/bin/sh
# Reference solution. The test suite runs it step by step, grading after each `# task:` line.
set -e
# task: capped
docker run -d --name capped --memory 64m --pids-limit 100 busybox sleep 3600
# task: memory-file
docker exec capped cat /sys/fs/cgroup/memory/memory.limit_in_bytes > ~/memory-limit.txt
# task: pids-file
docker exec capped cat /sys/fs/cgroup/pids/pids.max > ~/pids-max.txt
