#!/bin/sh
# Restarts site after the edit, which the task is about not needing.
# red: edit-live
set -e
docker run -d --name site -p 8080:80 --mount type=bind,source=$HOME/site,target=/usr/share/nginx/html,readonly nginx
for i in $(seq 1 30); do curl -fs localhost:8080 >/dev/null && break; sleep 0.5; done
sed -i 's/Draft: under construction/Open for business/' ~/site/index.html
docker restart -t 1 site
for i in $(seq 1 30); do curl -fs localhost:8080 >/dev/null && break; sleep 0.5; done
