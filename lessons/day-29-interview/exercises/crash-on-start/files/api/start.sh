#!/bin/sh
# A stand-in for a service that needs its configuration from the environment.
if [ -z "$DATABASE_URL" ]; then
  echo "starting api 1.4.2"
  echo "fatal: DATABASE_URL is not set; give it with -e DATABASE_URL=postgres://host:5432/db" >&2
  exit 78
fi
echo "starting api 1.4.2 with database ${DATABASE_URL%%\?*}"
echo "listening on :8080"
exec httpd -f -p 8080 -h /srv
