#!/bin/sh
# Kills box straight away: never stopped gracefully, never restarted.
# red: stop
set -e
docker create --name box busybox sleep 3600
sleep 3
docker start box
docker pause box
docker unpause box
docker kill box
