#!/bin/sh
# red: login-isolated
docker network connect bridge finance
