#!/bin/sh
# red: run
docker stop -t 1 pyapp
