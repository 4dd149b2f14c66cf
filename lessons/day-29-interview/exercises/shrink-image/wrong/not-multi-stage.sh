#!/bin/sh
# Strips the binary but keeps one stage: still the whole toolchain.
# red: slim
set -e
cd ~/shrink
sed -i "s/go build -o/go build -ldflags='-s -w' -o/" Dockerfile
docker build -q -t hello:slim .
