#!/usr/bin/env bash
# Benchmarks that print figures (session start, idle memory). Not part of `make test`.
source "$(dirname "$0")/common.sh"
need_root
need_cargo
cargo build --release -p docklab-server
"$TARGET_DIR/release/docklab" setup --state-dir "$STATE_DIR"
# Benchmarks that go through the server use the release build, as `make run` does.
DOCKLAB_BIN="$TARGET_DIR/release/docklab" DOCKLAB_STATE_DIR="$STATE_DIR" cargo bench -p docklab-tests
