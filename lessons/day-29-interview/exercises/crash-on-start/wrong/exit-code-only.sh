#!/bin/sh
# Saves the exit code but not the logs that say why.
# red: diagnose
set -e
docker inspect api --format 'exit code {{.State.ExitCode}}' > ~/diagnosis.txt
docker run -d --name api-fixed -e DATABASE_URL=postgres://db:5432/app api:1
sleep 2
