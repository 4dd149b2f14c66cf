#!/bin/sh
# "Fixes" the crash by replacing the program with one that prints what the check looks for.
# red: fixed
set -e
{ docker inspect api --format 'exit code {{.State.ExitCode}}'; docker logs api; } > ~/diagnosis.txt 2>&1
docker run -d --name api-fixed --entrypoint sh api:1 -c 'echo listening on :8080; exec sleep 3600'
sleep 2
