#!/bin/sh
# Reference solution. The test suite runs it step by step, grading after each `# task:` line.
set -e
# Waits up to 60 s for container $1's health status to become $2.
wait_health() {
  for _ in $(seq 60); do
    [ "$(docker inspect "$1" --format '{{.State.Health.Status}}')" = "$2" ] && return 0
    sleep 1
  done
  echo "$1 never became $2" >&2
  return 1
}
# task: image
mkdir -p ~/health
cat > ~/health/Dockerfile <<'DOCKERFILE'
FROM busybox
HEALTHCHECK --interval=2s --timeout=2s --retries=2 CMD test -f /tmp/ready
CMD ["sleep", "3600"]
DOCKERFILE
docker build -q -t health:1 ~/health
# task: sick
docker run -d --name sick health:1
wait_health sick unhealthy
# task: fine
docker run -d --name fine health:1 sh -c 'touch /tmp/ready && exec sleep 3600'
wait_health fine healthy
