#!/usr/bin/env bash
# Enforces the layering of docs/architecture.md: the codec and the core stay free of IO crates,
# the server free of the cluster's Raft and gRPC.
# Fails if a crate's normal (non-dev) dependency tree contains a forbidden crate.
set -euo pipefail
cd "$(dirname "$0")/.."

status=0
check() {
  local crate=$1 forbidden=$2
  [[ -d crates/$crate ]] || return 0
  local found
  found=$(cargo tree -p "$crate" -e normal --prefix none 2>/dev/null \
    | awk '{print $1}' | grep -E -x "$forbidden" | sort -u || true)
  if [[ -n $found ]]; then
    echo "check-deps: $crate must not depend on: $(echo "$found" | tr '\n' ' ')" >&2
    status=1
  else
    echo "check-deps: $crate ok"
  fi
}

io='tokio|tokio-.*|mio|futures.*|async-.*|tonic|tonic-.*|prost|prost-.*|rocksdb|librocksdb-sys|openraft'
check berth-codec "$io|tracing|tracing-.*"
check berth-core "$io"
# The server talks to the cluster through its port: no Raft, gRPC, protobuf or cluster crate.
check berth-server 'berth-cluster|berth-proto|tonic|tonic-.*|prost|prost-.*|openraft|rocksdb|librocksdb-sys'
# The load generator measures any broker: it must not pull in Berth's own broker, store or RocksDB.
check berth-bench 'berth-core|berth-store|berth-server|rocksdb|librocksdb-sys'
exit $status
