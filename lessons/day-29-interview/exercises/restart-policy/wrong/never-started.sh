#!/bin/sh
# Gives the policy but never starts worker again: Docker has nothing to restart.
# red: policy
set -e
docker wait worker
docker logs worker > ~/worker.log 2>&1
docker update --restart on-failure worker
sleep 3
