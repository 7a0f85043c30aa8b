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

# The cargo-fuzz scripts/fuzz.sh uses, pinned: it decides the build flags.
CARGO_FUZZ_VERSION=0.13.2

# ensure_cargo_fuzz: cargo-fuzz $CARGO_FUZZ_VERSION under .tools/ (git-ignored,
# never outside the repository), built from crates.io when missing or of
# another version, and the C++ compiler libfuzzer-sys builds libFuzzer with.
# Exports CARGO_FUZZ (the binary).
ensure_cargo_fuzz() {
  ensure_rust
  ensure_command c++ g++
  local root="$TIPWIRE_ROOT/.tools"
  CARGO_FUZZ="$root/bin/cargo-fuzz"
  if [ "$("$CARGO_FUZZ" --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
    say "installing cargo-fuzz $CARGO_FUZZ_VERSION into .tools/"
    cargo install --quiet --locked --force --root "$root" "cargo-fuzz@$CARGO_FUZZ_VERSION"
  fi
  export CARGO_FUZZ
}

redis_up() { # host port
  redis-cli -h "$1" -p "$2" ping 2>/dev/null | grep -q PONG
}

# ensure_redis: makes sure the tests' Redis answers on 127.0.0.1:6379,
# starting one (with AOF, data under .dev/test-redis) when none is running.
ensure_redis() {
  ensure_command redis-server redis-server
  ensure_command redis-cli redis-tools
  if redis_up 127.0.0.1 6379; then
    return 0
  fi
  local dir="$TIPWIRE_ROOT/.dev/test-redis"
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

# DEV_REDIS_PORT: the port of the development Redis (config/dev.toml's
# redis.url), kept off 6379 so the tests' Redis, which keeps nothing on disk,
# is never the one the dev gateway acknowledges tips from.
DEV_REDIS_PORT=6380

# ensure_dev_redis: makes sure the development Redis answers on
# 127.0.0.1:$DEV_REDIS_PORT, starting its own (data under .dev/redis) when
# none runs: AOF written to disk before every answer, nothing evicted, no RDB
# snapshots, no timestamps in the AOF and no automatic rewrites (SECURITY.md),
# so `tipwire serve`'s durability check passes without an override. A Redis
# already on that port is used as it is; the gateway refuses it if it could
# lose tips, and says how to fix it.
ensure_dev_redis() {
  ensure_command redis-server redis-server
  ensure_command redis-cli redis-tools
  if redis_up 127.0.0.1 "$DEV_REDIS_PORT"; then
    return 0
  fi
  local dir="$TIPWIRE_ROOT/.dev/redis"
  mkdir -p "$dir"
  say "starting redis-server on 127.0.0.1:$DEV_REDIS_PORT (AOF, fsync always; data in $dir)"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$DEV_REDIS_PORT" \
    --appendonly yes --appendfsync always --maxmemory-policy noeviction \
    --save "" --aof-timestamp-enabled no --auto-aof-rewrite-percentage 0 \
    --dir "$dir" --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" >/dev/null
  for _ in $(seq 1 50); do
    redis_up 127.0.0.1 "$DEV_REDIS_PORT" && return 0
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

# ensure_node: Node.js 20 or newer with npm (Debian's nodejs and npm
# packages when missing), for the mediator app's build and the browser tests.
ensure_node() {
  ensure_command node nodejs
  ensure_command npm npm
  local major
  major="$(node -p 'process.versions.node.split(".")[0]')"
  [ "$major" -ge 20 ] || die "Node.js $(node --version) is too old: the mediator app's build and browser tests need Node.js 20 or newer"
}

# web_stale DIR STAMP: whether any source under DIR (node_modules and dist
# aside) is newer than the file STAMP, or STAMP is missing.
web_stale() {
  [ -e "$2" ] || return 0
  [ -n "$(find "$1" \( -name node_modules -o -name dist \) -prune -o -type f -newer "$2" -print -quit)" ]
}

# ensure_web: builds the mediator app (scripts/build-web.sh) when
# web/mediator/dist is missing or older than its sources or lockfile; the
# gateway embeds dist at compile time, so this runs before cargo.
ensure_web() {
  local app="$TIPWIRE_ROOT/web/mediator"
  if web_stale "$app" "$app/dist/index.html"; then
    "$TIPWIRE_ROOT/scripts/build-web.sh"
  fi
}

# ensure_browser_tests: Debian's Chromium and the browser tests' npm packages
# (tests/browser: playwright-core, pinned), installed when missing or when
# the lockfile changed; exports TIPWIRE_TEST_CHROMIUM for the integration tests.
ensure_browser_tests() {
  ensure_node
  ensure_command chromium chromium
  local dir="$TIPWIRE_ROOT/tests/browser"
  if ! [ -d "$dir/node_modules" ] || ! cmp -s "$dir/package-lock.json" "$dir/node_modules/.package-lock-installed.json"; then
    say "npm ci (tests/browser: playwright-core)"
    (cd "$dir" && npm_config_cache="$TIPWIRE_ROOT/.dev/npm-cache" npm ci --no-audit --no-fund --loglevel=error)
    cp "$dir/package-lock.json" "$dir/node_modules/.package-lock-installed.json"
  fi
  export TIPWIRE_TEST_CHROMIUM="${TIPWIRE_TEST_CHROMIUM:-$(command -v chromium)}"
}

# tipwire_bin: the installed binary, else the newest one built here.
tipwire_bin() {
  if [ -n "${TIPWIRE_BIN:-}" ]; then echo "$TIPWIRE_BIN"; return; fi
  for candidate in "$TIPWIRE_ROOT/target/release/tipwire" "$TIPWIRE_ROOT/target/debug/tipwire" "$(command -v tipwire 2>/dev/null)"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then echo "$candidate"; return; fi
  done
  die "no tipwire binary: run 'cargo build --release' or set TIPWIRE_BIN"
}

# bench_config_base WORK PORT PREFIX [DURABILITY]: prints the start of a
# benchmark gateway's config: HTTPS on PORT, the dev certificate and keys
# under WORK (as `tipwire dev init --dir WORK` makes them), Redis keys under
# PREFIX with redis.durability DURABILITY (default "strict"), warnings only;
# every limit at its default.
bench_config_base() {
  cat <<TOML
[server]
port = $2
[tls]
cert_path = "$1/tls/cert.pem"
key_path = "$1/tls/key.pem"
[keys]
dir = "$1/keys"
[redis]
key_prefix = "$3"
durability = "${4:-strict}"
[log]
filter = "warn"
TOML
}

# bench_config_head WORK PORT PREFIX [CHANNEL...]: bench_config_base on the
# machine's Redis at 6379, which need not persist (the figures measure the
# gateway, not Redis's disk; hence the dangerous durability override), with
# the rate limits of web and each CHANNEL (sms, email) and the per-address
# connection limits lifted (every load client comes from loopback), so no
# limit shapes a load. With the cleanup below.
bench_config_head() {
  local work="$1" port="$2" prefix="$3" channel
  shift 3
  bench_config_base "$work" "$port" "$prefix" dangerous-no-persistence
  cat <<TOML
[server.connections]
max = 8192
max_per_address = 8192
max_handshakes = 2048
max_handshakes_per_address = 2048
requests_per_address = { count = 1000000000, per_secs = 1 }
TOML
  for channel in web "$@"; do
    printf '[rate_limits.%s]\nper_client = { count = 1000000000, per_secs = 1 }\nglobal = { count = 1000000000, per_secs = 1 }\n' "$channel"
    if [ "$channel" = email ]; then
      printf 'per_address = { count = 1000000000, per_secs = 1 }\n'
    fi
  done
}

# bench_cleanup WORK PREFIX [PID]: for a benchmark's EXIT trap: stops the
# gateway PID (if any), deletes the Redis keys under PREFIX and WORK.
bench_cleanup() {
  if [ -n "${3:-}" ]; then
    kill "$3" 2>/dev/null || true
    wait "$3" 2>/dev/null || true
  fi
  redis-cli --scan --pattern "$2:*" | xargs -r -n 500 redis-cli del >/dev/null
  rm -rf "$1"
}

# Starts `BIN serve` in the background (stderr to WORK/serve.log), sets
# server_pid, and waits until `CHECK...` succeeds (a command; it is retried
# for 10 s). A gateway that exits or never answers stops the script with its log.
bench_start_gateway() { # bin work check...
  local bin="$1" work="$2"
  shift 2
  "$bin" serve 2>"$work/serve.log" &
  server_pid=$!
  for _ in $(seq 1 100); do
    if "$@"; then
      sleep 1
      return 0
    fi
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  cat "$work/serve.log" >&2
  die "the gateway did not come up (checked with: $*)"
}

# bench_twilio_config WORK: writes the auth token WORK/twilio-token (the
# load clients sign with "bench-auth-token") and prints the [sms.twilio]
# table of a benchmark gateway; replies go nowhere (port 9).
bench_twilio_config() {
  ( umask 077; printf 'bench-auth-token' > "$1/twilio-token" )
  printf '[sms.twilio]\nenabled = true\naccount_sid = "AC00000000000000000000000000000001"\nauth_token_files = ["%s"]\napi_base_url = "http://127.0.0.1:9"\n' "$1/twilio-token"
}

# True when https://127.0.0.1:PORT/healthz answers 2xx.
healthz_up() { curl -skf "https://127.0.0.1:$1/healthz" >/dev/null 2>&1; }

# True when healthz_up HTTPS_PORT and 127.0.0.1:SMTP_PORT takes a connection.
https_and_smtp_up() {
  healthz_up "$1" \
    && python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 1).close()" "$2" 2>/dev/null
}

# bench_email_config TO PORT: the [email] table of a benchmark gateway that
# takes mail for TO on 127.0.0.1:PORT, STARTTLS offered.
bench_email_config() {
  printf '[email]\nenabled = true\naddresses = ["%s"]\nhost = "127.0.0.1"\nport = %s\nhostname = "localhost"\n' "$1" "$2"
}
