#!/usr/bin/env bash
# The whole test suite: logic tests, real session machines as root, and a real browser.
source "$(dirname "$0")/common.sh"
need_root
need_cargo
ARTIFACTS="$ROOT/artifacts"
mkdir -p "$ARTIFACTS"

step "Building docklab and the tests"
cargo build -p docklab-server
cargo test --workspace --no-run

step "Setting up this machine (packages, node image)"
"$TARGET_DIR/debug/docklab" setup --state-dir "$STATE_DIR"

step "Removing session machines an interrupted earlier run left behind"
"$TARGET_DIR/debug/docklab" reap --state-dir "$STATE_DIR"

step "Unit tests and real session-machine tests"
# The registry pull-through cache test runs Debian's registry as its upstream (skopeo pushes to it).
apt_install docker-registry skopeo
DOCKLAB_BIN="$TARGET_DIR/debug/docklab" DOCKLAB_STATE_DIR="$STATE_DIR" cargo test --workspace --no-fail-fast -- --test-threads=2

step "Browser tests (Debian chromium driven by playwright-core)"
apt_install chromium
( cd tests/browser && npm ci --no-audit --no-fund --loglevel=error )
DOCKLAB_BIN="$TARGET_DIR/debug/docklab" DOCKLAB_STATE_DIR="$STATE_DIR" ARTIFACTS="$ARTIFACTS" \
  node --test --test-concurrency=1 tests/browser/
