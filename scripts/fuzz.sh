#!/usr/bin/env bash
# Runs the libFuzzer target fuzz/fuzz_targets/decode.rs for SECONDS (default 60) on stable Rust.
#
#   scripts/fuzz.sh [SECONDS] [extra libFuzzer flags...]
#
# No nightly and no cargo-fuzz: libFuzzer comes from the libfuzzer-sys crate and the coverage
# instrumentation from LLVM's SanitizerCoverage pass, which stable rustc runs via -Cpasses. There
# is no AddressSanitizer (that needs nightly's -Zsanitizer); the codec forbids unsafe code apart
# from one audited from_utf8_unchecked, and panics, overflows (-Coverflow-checks), debug
# assertions and failed round trips are all caught.
#
# It builds into its own target dir, ${CARGO_TARGET_DIR:-~/.cache/berth/target}/fuzz, so the
# different RUSTFLAGS do not invalidate the main build cache. The corpus it grows lives there
# too (fuzz/seeds/ is only read), so repeated runs pick up where the last one stopped. A crash
# leaves its input in .../fuzz/artifacts/decode/ and makes this script exit non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
shift || true
target_dir="${CARGO_TARGET_DIR:-$HOME/.cache/berth/target}/fuzz"
host=$(rustc -vV | sed -n 's/^host: //p')

# --target makes cargo apply RUSTFLAGS to the fuzz target and its dependencies only, not to
# build scripts and proc macros.
unset CARGO_ENCODED_RUSTFLAGS
export RUSTFLAGS="-Cpasses=sancov-module \
-Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares \
--cfg fuzzing -Cdebug-assertions -Coverflow-checks"
cargo build --manifest-path fuzz/Cargo.toml --locked --release \
  --target "$host" --target-dir "$target_dir" --bin decode

corpus="$target_dir/corpus/decode"
artifacts="$target_dir/artifacts/decode"
log="$target_dir/decode.log"
mkdir -p "$corpus" "$artifacts"

echo "fuzz: running decode for ${seconds}s (corpus $corpus, log $log)"
# libFuzzer prints a line per new input, and warns that no sanitizer runtime is linked; keep
# those in the log and show the rest.
set +e
"$target_dir/$host/release/decode" \
  -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix="$artifacts/" "$@" "$corpus" fuzz/seeds 2>&1 \
  | tee "$log" | grep --line-buffered -v -E \
    '^#[0-9]+[[:space:]]+(NEW|REDUCE)|^[[:space:]]+NEW_FUNC|^"|^WARNING: Failed to find function "__sanitizer_'
status=${PIPESTATUS[0]}
set -e

if ((status != 0)); then
  echo "fuzz: FAILED (exit $status); crashing input in $artifacts/, reproduce with:" >&2
  echo "  $target_dir/$host/release/decode $artifacts/<crash-file>" >&2
  exit "$status"
fi
echo "fuzz: no crash in ${seconds}s"
