#!/bin/sh
# sick created ready (healthy); then replaced by one that never becomes ready.
# red: sick
set -e
wait_health() {
  for _ in $(seq 60); do
    [ "$(docker inspect "$1" --format '{{.State.Health.Status}}')" = "$2" ] && return 0
    sleep 1
  done
  return 1
}
mkdir -p ~/health
cat > ~/health/Dockerfile <<'DOCKERFILE'
FROM busybox
HEALTHCHECK --interval=2s --timeout=2s --retries=2 CMD test -f /tmp/ready
CMD ["sleep", "3600"]
DOCKERFILE
docker build -q -t health:1 ~/health
docker run -d --name sick health:1 sh -c 'touch /tmp/ready && exec sleep 3600'
docker run -d --name fine health:1 sh -c 'touch /tmp/ready && exec sleep 3600'
wait_health sick healthy
wait_health fine healthy
# fix
set -e
wait_health() {
  for _ in $(seq 60); do
    [ "$(docker inspect "$1" --format '{{.State.Health.Status}}')" = "$2" ] && return 0
    sleep 1
  done
  return 1
}
docker rm -f sick
docker run -d --name sick health:1
wait_health sick unhealthy
