#!/bin/sh
# sick becomes ready, then healthy.
# red: sick
docker exec sick touch /tmp/ready
for _ in $(seq 30); do [ "$(docker inspect sick --format '{{.State.Health.Status}}')" = healthy ] && break; sleep 1; done
