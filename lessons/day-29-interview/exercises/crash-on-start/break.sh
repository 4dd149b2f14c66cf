#!/bin/sh
# red: fixed
docker rm -f api-fixed
