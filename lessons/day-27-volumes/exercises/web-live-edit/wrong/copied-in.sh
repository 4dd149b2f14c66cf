#!/bin/sh
# Copies the page into the container instead of bind-mounting the folder.
# red: serve
set -e
docker run -d --name site -p 8080:80 nginx
for i in $(seq 1 30); do curl -fs localhost:8080 >/dev/null && break; sleep 0.5; done
docker cp ~/site/index.html site:/usr/share/nginx/html/index.html
