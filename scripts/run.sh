#!/usr/bin/env bash
# Set up this machine, build docklab, and serve the lab. `--setup-only` stops before serving.
source "$(dirname "$0")/common.sh"
need_root
need_cargo
LISTEN="${LISTEN:-127.0.0.1:8080}"

step "Building docklab (release)"
cargo build --release -p docklab-server
BIN="$TARGET_DIR/release/docklab"

step "Setting up this machine (packages, node image with Docker inside)"
"$BIN" setup --state-dir "$STATE_DIR"

if [ "${1:-}" = "--setup-only" ]; then exit 0; fi

step "Serving docklab on http://$LISTEN"
exec "$BIN" serve --listen "$LISTEN" --state-dir "$STATE_DIR"
