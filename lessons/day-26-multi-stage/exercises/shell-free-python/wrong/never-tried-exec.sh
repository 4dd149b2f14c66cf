#!/bin/sh
# Everything but the attempt to get a shell in quotes.
# red: no-way-in
set -e
cd ~/quotes
printf 'FROM python:3.11-slim\nCOPY app.py /app/app.py\nCMD ["python", "/app/app.py"]\n' > Dockerfile.slim
docker build -q -t quotes:slim -f Dockerfile.slim .
printf 'FROM gcr.io/distroless/python3-debian12\nCOPY app.py /app/app.py\nCMD ["/app/app.py"]\n' > Dockerfile
docker build -q -t quotes:distroless .
docker run -d --name quotes -p 8081:8000 quotes:distroless
for i in $(seq 1 30); do curl -fs localhost:8081 >/dev/null && break; sleep 0.5; done
