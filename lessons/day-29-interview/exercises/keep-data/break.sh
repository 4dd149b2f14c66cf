#!/bin/sh
# red: read-back
docker rm reader
