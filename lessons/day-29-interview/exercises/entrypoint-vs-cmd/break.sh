#!/bin/sh
# red: override-entrypoint
docker rm peek
