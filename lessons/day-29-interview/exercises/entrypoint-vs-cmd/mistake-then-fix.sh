#!/bin/sh
# Passes cat as an argument (the report script runs with period "cat"); then replaces the
# entrypoint with the full path /bin/cat, which is as good as cat.
# red: override-entrypoint
set -e
docker run --name weekly report:1 weekly
docker run --name peek report:1 cat /usr/local/bin/report
# fix
set -e
docker rm peek
docker run --name peek --entrypoint /bin/cat report:1 /usr/local/bin/report
mkdir -p ~/report2
printf 'FROM report:1\nCMD ["monthly"]\n' > ~/report2/Dockerfile
docker build -q -t report:2 ~/report2
docker run report:2
