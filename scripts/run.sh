#!/usr/bin/env bash
# Runs one Berth node with its embedded defaults (MQTT on 0.0.0.0:1883, HTTP on 0.0.0.0:8080,
# data in ./data), after installing what a fresh machine lacks. Extra arguments go to `berth`:
#
#   scripts/run.sh --listen 127.0.0.1:1884 --data-dir /var/lib/berth
#   scripts/run.sh --help
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/berth/target}"
scripts/setup.sh >&2
exec cargo run --release --locked -p berth -- "$@"
