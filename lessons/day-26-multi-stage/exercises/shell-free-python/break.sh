#!/bin/sh
# red: serve
docker rm -f quotes
