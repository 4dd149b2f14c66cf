#!/bin/sh
# payments joins payments-net but stays on the default bridge: login still reaches it.
# red: login-cut-off
set -e
docker network create payments-net
docker network connect payments-net payments
docker run -d --name api --network payments-net busybox sleep 3600
