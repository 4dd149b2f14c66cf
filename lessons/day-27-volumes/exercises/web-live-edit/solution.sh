#!/bin/sh
# Reference solution. The test suite runs it step by step, grading after each `# task:` line.
set -e
# task: serve
docker run -d --name site -p 8080:80 --mount type=bind,source=$HOME/site,target=/usr/share/nginx/html,readonly nginx
for i in $(seq 1 30); do curl -fs localhost:8080 >/dev/null && break; sleep 0.5; done
# task: edit-live
sed -i 's/Draft: under construction/Open for business/' ~/site/index.html
curl -s localhost:8080
# task: read-only
! docker exec site sh -c 'echo hacked > /usr/share/nginx/html/index.html' 2> ~/read-only.txt
