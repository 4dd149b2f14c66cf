#!/bin/sh
# Leaves a new anonymous volume behind.
# red: prune
docker run --name junk -v /junk busybox true && docker rm junk
