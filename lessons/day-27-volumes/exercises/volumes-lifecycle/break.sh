#!/bin/sh
# red: remove
docker volume create app-data
