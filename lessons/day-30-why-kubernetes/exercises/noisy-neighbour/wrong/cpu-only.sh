#!/bin/sh
# Limits the CPU only.
# red: tame
set -e
docker update --cpus 0.2 hog
docker run -d --name web --cpus 0.5 --memory 128m --pids-limit 100 nginx
