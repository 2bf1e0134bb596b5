#!/usr/bin/env bash
# A three-node Berth cluster on loopback, for development. Each node runs in the foreground of
# this script (Ctrl-C stops all three); logs go to ./data/cluster/nodeN.log.
#
#   node  MQTT             HTTP (/metrics)   cluster (gRPC)    data
#   1     127.0.0.1:1883   127.0.0.1:8081    127.0.0.1:7001    ./data/cluster/node1
#   2     127.0.0.1:1884   127.0.0.1:8082    127.0.0.1:7002    ./data/cluster/node2
#   3     127.0.0.1:1885   127.0.0.1:8083    127.0.0.1:7003    ./data/cluster/node3
#
# Status: target/release/berth cluster status --at 127.0.0.1:7001 (the binary this script built).
# Restarting the script restarts the nodes on their data: sessions and queues are kept.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/berth/target}"
scripts/setup.sh >&2
cargo build --release --locked -p berth >&2
berth="$CARGO_TARGET_DIR/release/berth"

peers="1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait' EXIT INT TERM
for n in 1 2 3; do
  dir="data/cluster/node$n"
  mkdir -p "$dir"
  "$berth" --node-id "$n" --listen "127.0.0.1:$((1882 + n))" --http "127.0.0.1:$((8080 + n))" \
    --cluster-listen "127.0.0.1:$((7000 + n))" --peers "$peers" --data-dir "$dir" \
    >"$dir.log" 2>&1 &
  pids+=("$!")
  echo "node $n: MQTT 127.0.0.1:$((1882 + n)), log $dir.log (pid $!)"
done
echo "cluster status: $berth cluster status --at 127.0.0.1:7001"
wait -n "${pids[@]}"
echo "a node stopped; stopping the others" >&2
