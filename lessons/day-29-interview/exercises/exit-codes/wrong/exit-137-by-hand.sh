#!/bin/sh
# sleeper exits with 137 by itself: nobody killed it.
# red: killed
set -e
docker run --name ok busybox true
docker run --name sleeper busybox sh -c 'exit 137' || true
