#!/bin/sh
# "Replaces" the entrypoint by passing the program as an argument: echo still runs.
# red: override-entrypoint
set -e
printf 'FROM busybox\nENTRYPOINT ["echo", "Hello,"]\nCMD ["world"]\n' > ~/greeter/Dockerfile
docker build -q -t greeter:1 ~/greeter
docker run greeter:1
docker run greeter:1 docker
docker run greeter:1 date
