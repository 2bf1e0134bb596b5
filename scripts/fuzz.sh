#!/usr/bin/env bash
# Runs the libFuzzer targets in fuzz/fuzz_targets/ on stable Rust, one after the other.
#
#   scripts/fuzz.sh [SECONDS] [TARGET] [extra libFuzzer flags...]
#
# SECONDS (default 60) is the whole run: without TARGET it is shared equally by every target
# (decode, proxy_header, ws_frames), so CI's fuzz time stays the same as targets are added.
# 0 means no time limit and needs a TARGET. An argument starting with '-' after SECONDS is a
# libFuzzer flag, not a target (`scripts/fuzz.sh 600 -fork=2` runs every target).
#
# No nightly and no cargo-fuzz: libFuzzer comes from the libfuzzer-sys crate and the coverage
# instrumentation from LLVM's SanitizerCoverage pass, which stable rustc runs via -Cpasses. There
# is no AddressSanitizer (that needs nightly's -Zsanitizer); the fuzzed crates forbid unsafe code
# (the codec apart from one audited from_utf8_unchecked), and panics, overflows
# (-Coverflow-checks), debug assertions, failed assertions and hangs (-timeout) are all caught.
#
# It builds into its own target dir, ${CARGO_TARGET_DIR:-~/.cache/berth/target}/fuzz, so the
# different RUSTFLAGS do not invalidate the main build cache. The corpora it grows live there
# too (the seed directories are only read), so repeated runs pick up where the last one stopped.
# A crash leaves its input in .../fuzz/artifacts/TARGET/ and makes this script exit non-zero,
# after the remaining targets have run.
set -euo pipefail
cd "$(dirname "$0")/.."

all_targets=(decode proxy_header ws_frames)

# The seeds of each target. decode's are written by a berth-codec test that owns fuzz/seeds/
# (see fuzz/README.md), so the others have directories of their own beside it.
seed_dir() {
  case "$1" in
    decode) echo fuzz/seeds ;;
    *) echo "fuzz/seeds-$1" ;;
  esac
}

seconds="${1:-60}"
shift || true
targets=("${all_targets[@]}")
if (($# > 0)) && [[ $1 != -* ]]; then
  if [[ ! -f "fuzz/fuzz_targets/$1.rs" ]]; then
    echo "fuzz: no target $1 (targets: ${all_targets[*]})" >&2
    exit 2
  fi
  targets=("$1")
  shift
fi
if [[ ! $seconds =~ ^[0-9]+$ ]]; then
  echo "fuzz: SECONDS must be a whole number, got $seconds" >&2
  exit 2
fi
if ((seconds == 0 && ${#targets[@]} > 1)); then
  echo "fuzz: SECONDS=0 runs until Ctrl-C or a crash: name one TARGET (${all_targets[*]})" >&2
  exit 2
fi
per_target=$((seconds / ${#targets[@]}))
if ((seconds > 0 && per_target == 0)); then
  per_target=1
fi

target_dir="${CARGO_TARGET_DIR:-$HOME/.cache/berth/target}/fuzz"
host=$(rustc -vV | sed -n 's/^host: //p')

# --target makes cargo apply RUSTFLAGS to the fuzz targets and their dependencies only, not to
# build scripts and proc macros.
unset CARGO_ENCODED_RUSTFLAGS
export RUSTFLAGS="-Cpasses=sancov-module \
-Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares \
--cfg fuzzing -Cdebug-assertions -Coverflow-checks"
bin_args=()
for target in "${targets[@]}"; do
  bin_args+=(--bin "$target")
done
cargo build --manifest-path fuzz/Cargo.toml --locked --release \
  --target "$host" --target-dir "$target_dir" "${bin_args[@]}"

failed=()
for target in "${targets[@]}"; do
  corpus="$target_dir/corpus/$target"
  artifacts="$target_dir/artifacts/$target"
  log="$target_dir/$target.log"
  seeds=$(seed_dir "$target")
  mkdir -p "$corpus" "$artifacts"

  echo "fuzz: running $target for ${per_target}s (corpus $corpus, log $log)"
  # libFuzzer prints a line per new input, and warns that no sanitizer runtime is linked; keep
  # those in the log and show the rest.
  set +e
  "$target_dir/$host/release/$target" \
    -max_total_time="$per_target" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" "$@" "$corpus" "$seeds" 2>&1 \
    | tee "$log" | grep --line-buffered -v -E \
      '^#[0-9]+[[:space:]]+(NEW|REDUCE)|^[[:space:]]+NEW_FUNC|^"|^WARNING: Failed to find function "__sanitizer_'
  status=${PIPESTATUS[0]}
  set -e

  if ((status != 0)); then
    echo "fuzz: $target FAILED (exit $status); crashing input in $artifacts/, reproduce with:" >&2
    echo "  $target_dir/$host/release/$target $artifacts/<crash-file>" >&2
    failed+=("$target")
  else
    echo "fuzz: $target: no crash in ${per_target}s"
  fi
done

if ((${#failed[@]} > 0)); then
  echo "fuzz: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: no crash in ${targets[*]}"
