#!/bin/sh
# web without a process limit at first; then given one with docker update.
# red: limited-web
set -e
docker update --cpus 0.2 --memory 64m --memory-swap 64m hog
docker run -d --name web --cpus 0.5 --memory 128m nginx
# fix
set -e
docker update --pids-limit 100 web
