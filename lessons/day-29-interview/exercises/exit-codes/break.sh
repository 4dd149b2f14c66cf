#!/bin/sh
# red: where-recorded
rm ~/hog-state.json
