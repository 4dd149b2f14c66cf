#!/bin/sh
# red: capped
docker rm -f capped
