#!/bin/sh
# red: tame
docker update --cpus 1 hog
