#!/bin/sh
# fine never creates /tmp/ready, so it is as unhealthy as sick.
# red: fine
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
docker run -d --name sick health:1
docker run -d --name fine health:1
wait_health sick unhealthy
wait_health fine unhealthy
