#!/bin/sh
set -e
docker build -q -t report:1 /root/report >/dev/null
