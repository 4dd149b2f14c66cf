#!/bin/sh
# Prints the script through sh -c instead of replacing the entrypoint with cat.
# red: override-entrypoint
set -e
docker run --name weekly report:1 weekly
docker run --name peek --entrypoint sh report:1 -c 'cat /usr/local/bin/report'
mkdir -p ~/report2
printf 'FROM report:1\nCMD ["monthly"]\n' > ~/report2/Dockerfile
docker build -q -t report:2 ~/report2
docker run report:2
