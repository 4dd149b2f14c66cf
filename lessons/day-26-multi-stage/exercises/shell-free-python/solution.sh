#!/bin/sh
# Reference solution. The test suite runs it step by step, grading after each `# task:` line.
set -e
cd ~/quotes
# task: slim
cat > Dockerfile.slim <<'DOCKERFILE'
FROM python:3.11-slim
COPY app.py /app/app.py
CMD ["python", "/app/app.py"]
DOCKERFILE
docker build -t quotes:slim -f Dockerfile.slim .
# task: distroless
cat > Dockerfile <<'DOCKERFILE'
FROM gcr.io/distroless/python3-debian12
COPY app.py /app/app.py
CMD ["/app/app.py"]
DOCKERFILE
docker build -t quotes:distroless .
# task: serve
docker run -d --name quotes -p 8081:8000 quotes:distroless
for i in $(seq 1 30); do curl -fs localhost:8081 && break; sleep 0.5; done
# task: no-way-in
! docker exec quotes sh -c 'echo inside'
