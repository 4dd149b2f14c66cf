#!/bin/sh
# Prints "report: weekly" with a shell instead of the entrypoint.
# red: override-cmd
set -e
docker run --name weekly --entrypoint sh report:1 -c 'echo report: weekly'
docker run --name peek --entrypoint cat report:1 /usr/local/bin/report
mkdir -p ~/report2
printf 'FROM report:1\nCMD ["monthly"]\n' > ~/report2/Dockerfile
docker build -q -t report:2 ~/report2
docker run report:2
