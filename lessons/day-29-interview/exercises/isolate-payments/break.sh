#!/bin/sh
# red: login-cut-off
docker network connect bridge payments
