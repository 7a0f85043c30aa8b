#!/usr/bin/env bash
# Fuzzes every target in fuzz/ (tipwire::fuzzing::TARGETS) with cargo-fuzz
# (libFuzzer) for SECONDS each (default 60), on a scratch copy of its
# committed corpus and regression inputs (fuzz/corpus/NAME,
# fuzz/regressions/NAME), so the committed corpus never grows by itself.
# Prints per target: executions, coverage (libFuzzer's cov: edges and ft:
# features), corpus size, peak RSS and crashes; exits non-zero when any
# target crashed, naming the crashing input (kept under fuzz/artifacts/NAME/).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Environment:
#   FUZZ_BUILD=release|dev   release (default): optimised, with overflow checks
#                            and debug assertions (fuzz/Cargo.toml); dev
#                            (opt-level 1, parallel codegen) rebuilds faster
#                            after a change but costs more CPU from scratch
#                            and runs slower, so CI uses release too.
#   FUZZ_SANITIZER=none|address   none (default): tipwire forbids unsafe code,
#                            so panics are what there is to find; address adds
#                            ASan for the dependencies' unsafe code (slower).
#   FUZZ_JOBS=N              targets fuzzed at once (default 1).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$TIPWIRE_ROOT"

seconds="${1:-60}"
[[ "$seconds" =~ ^[1-9][0-9]*$ ]] || die "usage: scripts/fuzz.sh [SECONDS] [TARGET...]"
shift $(( $# > 0 ? 1 : 0 ))
build="${FUZZ_BUILD:-release}"
sanitizer="${FUZZ_SANITIZER:-none}"
jobs="${FUZZ_JOBS:-1}"

ensure_cargo_fuzz
# The fuzz targets link the library, which embeds the mediator app.
ensure_web

build_flags=(--sanitizer "$sanitizer")
case "$build" in
  release) build_flags+=(-O); profile=release ;;
  dev) build_flags+=(--dev); profile=debug ;;
  *) die "FUZZ_BUILD must be release or dev, not $build" ;;
esac
if [ "$sanitizer" != none ]; then
  # -Zsanitizer is unstable: the stable compiler takes it only in bootstrap
  # mode. Not set otherwise, so no build script sees a "nightly" compiler.
  export RUSTC_BOOTSTRAP=1
fi

say "building the fuzz targets ($build, sanitizer $sanitizer)"
started=$SECONDS
"$CARGO_FUZZ" build --fuzz-dir fuzz "${build_flags[@]}"
say "built in $(( SECONDS - started )) s"

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <("$CARGO_FUZZ" list --fuzz-dir fuzz)
fi
[ ${#targets[@]} -gt 0 ] || die "no fuzz targets in fuzz/"

bin_dir="fuzz/target/$(rustc -vV | sed -n 's/^host: //p')/$profile"
scratch="$(mktemp -d "${TMPDIR:-/tmp}/tipwire-fuzz.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT

# fuzz_one NAME: fuzzes NAME into $scratch/NAME.log and $scratch/NAME.status.
fuzz_one() {
  local name="$1" corpus="$scratch/corpus/$1" artifacts="fuzz/artifacts/$1"
  local status=0
  mkdir -p "$corpus" "$artifacts"
  cp -a "fuzz/corpus/$name/." "$corpus/"
  if [ -d "fuzz/regressions/$name" ]; then
    cp -a "fuzz/regressions/$name/." "$corpus/"
  fi
  # -timeout: one input taking seconds is a finding (a slow path an attacker
  # can repeat); -rss_limit_mb: the process as a whole, the per-input heap
  # bound is each target's own (tipwire::fuzzing::Target::max_alloc_bytes).
  "$bin_dir/$name" "$corpus" \
    -max_total_time="$seconds" -timeout=5 -rss_limit_mb=1024 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" \
    >"$scratch/$name.log" 2>&1 || status=$?
  echo "$status" >"$scratch/$name.status"
}

say "fuzzing ${#targets[@]} targets for ${seconds} s each"
running=0
for name in "${targets[@]}"; do
  [ -x "$bin_dir/$name" ] || die "no fuzz binary $bin_dir/$name (is $name in fuzz/Cargo.toml?)"
  fuzz_one "$name" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait -n || true
    running=$((running - 1))
  fi
done
wait

# stat NAME KEY: a libFuzzer final statistic of NAME's run.
stat() { sed -n "s/^stat::$2: *//p" "$scratch/$1.log" | tail -1; }
# progress NAME FIELD: the last value libFuzzer printed for FIELD (cov:, ft:, corp:).
progress() { grep -o "$2 [^ ]*" "$scratch/$1.log" | tail -1 | cut -d' ' -f2; }

failed=0
printf '\n%-20s %12s %9s %7s %7s %12s %8s %8s\n' target executions exec/s cov ft corpus rss_mb crashes
for name in "${targets[@]}"; do
  crashes="$(grep -c '^artifact_prefix=.*Test unit written to' "$scratch/$name.log" || true)"
  status="$(cat "$scratch/$name.status")"
  if [ "$status" -ne 0 ] && [ "$crashes" -eq 0 ]; then
    crashes=1 # died without writing an input: its log says why
  fi
  printf '%-20s %12s %9s %7s %7s %12s %8s %8s\n' "$name" \
    "$(stat "$name" number_of_executed_units)" "$(stat "$name" average_exec_per_sec)" \
    "$(progress "$name" cov:)" "$(progress "$name" ft:)" "$(progress "$name" corp:)" \
    "$(stat "$name" peak_rss_mb)" "$crashes"
  if [ "$status" -ne 0 ]; then
    failed=1
  fi
done
echo
for name in "${targets[@]}"; do
  if [ "$(cat "$scratch/$name.status")" -ne 0 ]; then
    echo "---- $name failed; what failed, then the end of its log:"
    grep -m1 -A2 'panicked at\|ERROR: libFuzzer' "$scratch/$name.log" || true
    echo "..."
    tail -n 12 "$scratch/$name.log"
    for input in $(sed -n 's/.*Test unit written to //p' "$scratch/$name.log"); do
      echo "crashing input: $input"
      # CI keeps no files: the log carries the input (bounded) to replay it.
      if [ -f "$input" ] && [ "$(wc -c < "$input")" -le 65536 ]; then
        echo "its bytes (base64; base64 -d > input to rebuild it):"
        base64 "$input"
      fi
    done
    echo "replay: $bin_dir/$name <crashing input>; once fixed, commit it to fuzz/regressions/$name/"
  fi
done
exit "$failed"
