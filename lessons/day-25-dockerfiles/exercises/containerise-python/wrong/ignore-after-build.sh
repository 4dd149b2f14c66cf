#!/bin/sh
# Writes the .dockerignore only after building: the image still holds secrets.env.
# red: dockerignore
set -e
cat > ~/pyapp/Dockerfile <<'DOCKERFILE'
FROM python:3.11-slim
WORKDIR /app
COPY . .
EXPOSE 8000
CMD ["python", "app.py"]
DOCKERFILE
docker build -q -t pyapp:1 ~/pyapp
printf 'secrets.env\nnotes/\n' > ~/pyapp/.dockerignore
docker run -d --name pyapp -p 8080:8000 pyapp:1
for i in $(seq 1 30); do curl -fs localhost:8080 >/dev/null && break; sleep 0.5; done
