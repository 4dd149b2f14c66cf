#!/bin/sh
# Runs the replacement without the variable (it crashes again); then with it.
# red: fixed
set -e
{ docker inspect api --format 'exit code {{.State.ExitCode}}'; docker logs api; } > ~/diagnosis.txt 2>&1
docker run -d --name api-fixed api:1
sleep 2
# fix
set -e
docker rm -f api-fixed
docker run -d --name api-fixed -e DATABASE_URL=postgres://db:5432/app api:1
sleep 2
