#!/bin/sh
# red: registry
docker rm -f registry
