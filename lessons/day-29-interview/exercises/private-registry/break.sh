#!/bin/sh
# red: run-registry
docker rm -f registry
