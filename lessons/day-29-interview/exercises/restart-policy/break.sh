#!/bin/sh
# red: diagnose
rm ~/worker.log
