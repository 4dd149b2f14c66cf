#!/bin/sh
# A worker that crashes after a second of work, started without a restart policy.
set -e
docker run -d --name worker busybox sh -c 'echo working; sleep 1; echo crashed >&2; exit 1' >/dev/null
