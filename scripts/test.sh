#!/usr/bin/env bash
# Runs every test: formatting and lints, unit and property tests, and the
# integration suite against a real Redis (started here if none is running) with
# the reference age tool (installed from Debian's packages if missing) and the
# Python SMTP peers (aiosmtpd, smtplib) in a virtualenv under .dev/, the
# mediator app built (web/mediator/dist, embedded by the gateway), and
# Debian's Chromium with playwright-core for the browser tests. `cargo test`
# replays every fuzz corpus and regression input (src/fuzzing); then, when run
# without arguments (as CI runs it), every fuzz target is fuzzed briefly:
# TIPWIRE_CI_FUZZ_SECONDS each (default 5), see scripts/fuzz.sh.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$TIPWIRE_ROOT"

ensure_rust
ensure_redis
ensure_command age age
ensure_test_python
ensure_web
ensure_browser_tests

say "cargo fmt --check"
cargo fmt --all -- --check
say "cargo clippy"
cargo clippy --quiet --all-targets -- -D warnings
say "cargo test"
cargo test "$@"
if [ $# -eq 0 ]; then
  say "fuzzing every target briefly (scripts/fuzz.sh)"
  scripts/fuzz.sh "${TIPWIRE_CI_FUZZ_SECONDS:-5}"
fi
