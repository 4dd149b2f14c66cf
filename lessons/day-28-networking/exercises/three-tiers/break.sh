#!/bin/sh
# red: matrix
docker network disconnect frontend-net backend
