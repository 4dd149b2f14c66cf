#!/bin/sh
# A writable bind mount, restarted once; then removed and run again the right way, which must not
# be held against the new site.
# red: serve
set -e
docker run -d --name site -p 8080:80 -v ~/site:/usr/share/nginx/html nginx
docker restart -t 1 site
# fix
set -e
docker rm -f site
docker run -d --name site -p 8080:80 --mount type=bind,source=$HOME/site,target=/usr/share/nginx/html,readonly nginx
for i in $(seq 1 30); do curl -fs localhost:8080 >/dev/null && break; sleep 0.5; done
sed -i 's/Draft: under construction/Open for business/' ~/site/index.html
! docker exec site sh -c 'echo hacked > /usr/share/nginx/html/index.html' 2> ~/read-only.txt
