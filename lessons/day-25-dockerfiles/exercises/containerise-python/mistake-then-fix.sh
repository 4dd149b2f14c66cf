#!/bin/sh
# Publishes the wrong port first, then replaces the container.
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
docker run -d --name pyapp -p 8080:80 pyapp:1
# fix
set -e
docker rm -f pyapp
docker run -d --name pyapp -p 8080:8000 pyapp:1
for i in $(seq 1 30); do curl -fs localhost:8080 >/dev/null && break; sleep 0.5; done
