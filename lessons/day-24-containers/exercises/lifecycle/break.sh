#!/bin/sh
# A box is back: "Remove box" no longer holds.
# red: remove
docker create --name box busybox sleep 3600
