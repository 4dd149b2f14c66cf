#!/bin/sh
# red: multi-stage
docker rmi calc:scratch
