#!/bin/sh
# Both services start on the default bridge, where each can reach the other.
set -e
docker run -d --name login busybox sleep 3600 >/dev/null
docker run -d --name payments busybox sleep 3600 >/dev/null
