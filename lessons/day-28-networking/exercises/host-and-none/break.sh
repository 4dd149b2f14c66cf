#!/bin/sh
# red: host
docker rm -f hostweb
