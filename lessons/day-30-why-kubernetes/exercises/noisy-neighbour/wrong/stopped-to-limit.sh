#!/bin/sh
# Stops hog, limits it, starts it again: it did not keep running.
# red: tame
set -e
docker stop -t 1 hog
docker update --cpus 0.2 --memory 64m --memory-swap 64m hog
docker start hog
docker run -d --name web --cpus 0.5 --memory 128m --pids-limit 100 nginx
