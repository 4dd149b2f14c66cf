#!/bin/sh
# red: comes-back
docker rm -f resilient
