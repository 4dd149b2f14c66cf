#!/bin/sh
# Removes every container of greeter:1.
# red: run-default
docker rm $(docker ps -aq --filter ancestor=greeter:1)
