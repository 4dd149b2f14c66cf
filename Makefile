# docklab: the two commands a newcomer needs.
#   make run    set up this machine (packages, node image), build, and serve the lab
#   make test   the whole test suite: unit tests, real session machines, a real browser
# Both must run as root: session machines need user namespaces, cgroups and mounts.

LISTEN    ?= 127.0.0.1:8080
STATE_DIR ?= /var/lib/docklab

.PHONY: run test bench setup build clean-sessions

run:
	LISTEN=$(LISTEN) STATE_DIR=$(STATE_DIR) scripts/run.sh

test:
	STATE_DIR=$(STATE_DIR) scripts/test.sh

bench:
	STATE_DIR=$(STATE_DIR) scripts/bench.sh

setup build:
	STATE_DIR=$(STATE_DIR) scripts/run.sh --setup-only
