#!/usr/bin/env bash
# Runs every test: formatting and lints, unit and property tests, and the
# integration suite against a real Redis (started here if none is running) with
# the reference age tool (installed from Debian's packages if missing) and the
# Python SMTP peers (aiosmtpd, smtplib) in a virtualenv under .dev/, the
# mediator app built (web/mediator/dist, embedded by the gateway), and
# Debian's Chromium with playwright-core for the browser tests.
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
