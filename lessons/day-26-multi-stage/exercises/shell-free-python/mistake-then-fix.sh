#!/bin/sh
# Publishes port 80 of the container, where nothing listens; then replaces it.
# red: serve
set -e
cd ~/quotes
printf 'FROM python:3.11-slim\nCOPY app.py /app/app.py\nCMD ["python", "/app/app.py"]\n' > Dockerfile.slim
docker build -q -t quotes:slim -f Dockerfile.slim .
printf 'FROM gcr.io/distroless/python3-debian12\nCOPY app.py /app/app.py\nCMD ["/app/app.py"]\n' > Dockerfile
docker build -q -t quotes:distroless .
docker run -d --name quotes -p 8081:80 quotes:distroless
# fix
set -e
docker rm -f quotes
docker run -d --name quotes -p 8081:8000 quotes:distroless
for i in $(seq 1 30); do curl -fs localhost:8081 >/dev/null && break; sleep 0.5; done
! docker exec quotes sh -c 'echo inside'
