# Shared helpers for tipwire's scripts. Sourced, not run.
# shellcheck shell=bash

TIPWIRE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export TIPWIRE_ROOT

say() { printf '\033[1m==>\033[0m %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

APT_UPDATED=""
# apt_install PACKAGE WHAT: installs Debian's PACKAGE (needed for WHAT).
apt_install() {
  command -v apt-get >/dev/null 2>&1 || die "$2 is missing and this is not a Debian system: install $1 yourself"
  say "installing $1 (for $2)"
  if [ -z "$APT_UPDATED" ]; then
    as_root apt-get update -qq >/dev/null
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$1" >/dev/null
}

# ensure_command CMD PACKAGE: installs Debian's PACKAGE when CMD is missing.
ensure_command() {
  command -v "$1" >/dev/null 2>&1 && return 0
  apt_install "$2" "$1"
  command -v "$1" >/dev/null 2>&1 || die "installing $2 did not provide $1"
}

ensure_rust() {
  command -v cargo >/dev/null 2>&1 && return 0
  die "cargo is missing: install Rust with rustup (https://rustup.rs), then run this again"
}

redis_up() { # host port
  redis-cli -h "$1" -p "$2" ping 2>/dev/null | grep -q PONG
}

# ensure_redis: makes sure a Redis answers on 127.0.0.1:6379, starting one
# (with AOF, data under .dev/redis) when none is running.
ensure_redis() {
  ensure_command redis-server redis-server
  ensure_command redis-cli redis-tools
  if redis_up 127.0.0.1 6379; then
    return 0
  fi
  local dir="$TIPWIRE_ROOT/.dev/redis"
  mkdir -p "$dir"
  say "starting redis-server on 127.0.0.1:6379 (AOF on, data in $dir)"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 \
    --appendonly yes --dir "$dir" --logfile "$dir/redis.log" >/dev/null
  for _ in $(seq 1 50); do
    redis_up 127.0.0.1 6379 && return 0
    sleep 0.1
  done
  die "redis-server did not start; see $dir/redis.log"
}

# ensure_test_python: a virtualenv under .dev/test-python with the test-only
# peers of tests/peers/requirements.txt (aiosmtpd, ...), remade when that file
# changes; exports TIPWIRE_TEST_PYTHON for the integration tests.
ensure_test_python() {
  local venv="$TIPWIRE_ROOT/.dev/test-python"
  local wanted="$TIPWIRE_ROOT/tests/peers/requirements.txt"
  if ! [ -x "$venv/bin/python" ] || ! cmp -s "$wanted" "$venv/requirements.txt"; then
    ensure_command python3 python3
    if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
      ensure_apt_package python3-venv
    fi
    say "making the test peers' Python environment in $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$wanted"
    cp "$wanted" "$venv/requirements.txt"
  fi
  export TIPWIRE_TEST_PYTHON="$venv/bin/python"
}

# ensure_apt_package PACKAGE: installs a Debian package that provides no command.
ensure_apt_package() {
  dpkg -s "$1" >/dev/null 2>&1 && return 0
  apt_install "$1" "$1"
}

# tipwire_bin: the installed binary, else the newest one built here.
tipwire_bin() {
  if [ -n "${TIPWIRE_BIN:-}" ]; then echo "$TIPWIRE_BIN"; return; fi
  for candidate in "$TIPWIRE_ROOT/target/release/tipwire" "$TIPWIRE_ROOT/target/debug/tipwire" "$(command -v tipwire 2>/dev/null)"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then echo "$candidate"; return; fi
  done
  die "no tipwire binary: run 'cargo build --release' or set TIPWIRE_BIN"
}
