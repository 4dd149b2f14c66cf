#!/bin/sh
set -e
docker build -q -t api:1 /root/api >/dev/null
docker run -d --name api api:1 >/dev/null
docker wait api >/dev/null
