#!/bin/sh
# Publishes port 80 of the container, where nothing listens.
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
sleep 2
