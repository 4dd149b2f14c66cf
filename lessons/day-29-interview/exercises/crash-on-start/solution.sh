#!/bin/sh
# Reference solution. The test suite runs it step by step, grading after each `# task:` line.
set -e
# task: diagnose
docker ps -a --filter name=api
{ docker inspect api --format 'exit code {{.State.ExitCode}}'; docker logs api; } > ~/diagnosis.txt 2>&1
cat ~/diagnosis.txt
# task: fixed
docker run -d --name api-fixed -e DATABASE_URL=postgres://db:5432/app api:1
sleep 1
docker logs api-fixed
