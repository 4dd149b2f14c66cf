#!/bin/sh
# pyapp runs unpublished; another container of the same image publishes 8080.
# red: run
set -e
cat > ~/pyapp/Dockerfile <<'DOCKERFILE'
FROM python:3.11-slim
WORKDIR /app
COPY . .
EXPOSE 8000
CMD ["python", "app.py"]
DOCKERFILE
printf 'secrets.env\nnotes/\n' > ~/pyapp/.dockerignore
docker build -q -t pyapp:1 ~/pyapp
docker run -d --name pyapp pyapp:1
docker run -d --name other -p 8080:8000 pyapp:1
for i in $(seq 1 30); do curl -fs localhost:8080 >/dev/null && break; sleep 0.5; done
