#!/bin/sh
# Runs the default with --rm, so no container is left to show what it printed; then runs it again.
# red: run-default
set -e
printf 'FROM busybox\nENTRYPOINT ["echo", "Hello,"]\nCMD ["world"]\n' > ~/greeter/Dockerfile
docker build -q -t greeter:1 ~/greeter
docker run --rm greeter:1
# fix
set -e
docker run greeter:1
docker run greeter:1 docker
docker run --entrypoint date greeter:1
