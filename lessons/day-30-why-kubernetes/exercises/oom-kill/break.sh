#!/bin/sh
# red: oom
docker rm greedy
