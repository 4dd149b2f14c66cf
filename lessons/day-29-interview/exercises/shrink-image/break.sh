#!/bin/sh
# red: slim
docker rmi -f hello:slim
