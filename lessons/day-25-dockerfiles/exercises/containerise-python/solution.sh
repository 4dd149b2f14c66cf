#!/bin/sh
# Reference solution. The test suite runs it step by step, grading after each `# task:` line.
set -e
# task: build
cat > ~/pyapp/Dockerfile <<'DOCKERFILE'
FROM python:3.11-slim
WORKDIR /app
COPY . .
EXPOSE 8000
CMD ["python", "app.py"]
DOCKERFILE
printf 'notes/\n' > ~/pyapp/.dockerignore
docker build -t pyapp:1 ~/pyapp
# task: dockerignore
printf 'secrets.env\nnotes/\n.dockerignore\nDockerfile\n' > ~/pyapp/.dockerignore
docker build -t pyapp:1 ~/pyapp
# task: run
docker run -d --name pyapp -p 8080:8000 pyapp:1
for i in $(seq 1 30); do curl -fs localhost:8080 && break; sleep 0.5; done
