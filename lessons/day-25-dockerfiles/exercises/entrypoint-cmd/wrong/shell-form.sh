#!/bin/sh
# ENTRYPOINT in shell form: `sh -c` ignores CMD and arguments.
# red: build
set -e
printf 'FROM busybox\nENTRYPOINT echo Hello,\nCMD ["world"]\n' > ~/greeter/Dockerfile
docker build -q -t greeter:1 ~/greeter
docker run greeter:1
docker run greeter:1 docker
docker run --entrypoint date greeter:1
