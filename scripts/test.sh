#!/usr/bin/env bash
# The whole test suite: what README.md calls "run the tests" and what CI runs.
#
#   BERTH_FUZZ_SECONDS   length of the bounded fuzz run (default 60; 0 skips it)
#   CARGO_TARGET_DIR     defaults to ~/.cache/berth/target so that fresh clones on the same
#                        machine reuse earlier builds (RocksDB's C++ takes ~18 min to build)
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/berth/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

scripts/setup.sh
scripts/check-deps.sh

# Some tests hold over a thousand connections at once (the listen backlog's burst, say): the
# soft open-files limit goes up to the hard one, where a shell started lower.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

cargo nextest run --workspace --all-targets --locked
cargo test --workspace --doc --locked

fuzz_seconds="${BERTH_FUZZ_SECONDS:-60}"
if [[ $fuzz_seconds != 0 ]]; then
  scripts/fuzz.sh "$fuzz_seconds"
fi
