#!/usr/bin/env bash
# Abuse under load (issue 11, part 3). Starts a private Redis (AOF, appendfsync
# always, as in production) and a release gateway with every channel on (web
# form, Twilio and Telnyx webhooks, SMTP) and the production rate limits, then
# runs benches/abuse.rs: legitimate tips on every channel at RATE a second
# each, alone (baseline) and while attackers flood the gateway from other
# addresses (forged and replayed webhooks, oversized and malformed forms,
# invite guesses, invalid session tokens, oversized and slow-drip SMTP),
# alternating ROUNDS times. Prints a table per phase, the attackers' request
# rates, the ratios under attack / baseline per channel (target >= 0.80), the
# gateway's peak RSS (VmHWM), and checks that every acknowledged legitimate
# tip is in the stream.
# Figures vary with the machine's load: compare ratios, not absolutes.
#
# Only the per-address limits the load generator would trip by itself are
# not at their defaults: none. The legitimate tipsters come from 127.1.C.x
# and stay under every per-client limit; the attackers come from
# 127.{10+round}.A.x.
#
# scripts/bench-abuse.sh [SECONDS_PER_PHASE (default 12)] [ROUNDS (default 3)] [RATE (default 4)]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$TIPWIRE_ROOT"

secs="${1:-12}"
rounds="${2:-3}"
rate="${3:-4}"
ensure_rust
ensure_command redis-server redis-server
ensure_command redis-cli redis-tools
ensure_command python3 python3
ensure_command curl curl

# Attackers and tipsters open many sockets; both ends run under this limit.
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 8192 ]; then
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fi

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
say "building (release)"
cargo build --quiet --release --bin tipwire
cargo bench --quiet --bench abuse --no-run 2>/dev/null
bin="$TIPWIRE_ROOT/target/release/tipwire"
abuse_bin=$(find "$TIPWIRE_ROOT/target/release/deps" -maxdepth 1 -type f -executable -name 'abuse-*' -printf '%T@ %p\n' \
  | sort -n | tail -1 | cut -d' ' -f2)
[ -x "$abuse_bin" ] || die "bench binary not built"

work="$(mktemp -d)"
server_pid=""
redis_pid=""
cleanup() {
  for pid in "$server_pid" "$redis_pid"; do
    if [ -n "$pid" ]; then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
https_port=$(free_port)
smtp_port=$(free_port)
redis_port=$(free_port)

say "private Redis on 127.0.0.1:$redis_port (appendonly yes, appendfsync always)"
mkdir -p "$work/redis"
redis-server --bind 127.0.0.1 --port "$redis_port" --appendonly yes --appendfsync always \
  --save '' --dir "$work/redis" --logfile "$work/redis/redis.log" &
redis_pid=$!
for _ in $(seq 1 50); do redis_up 127.0.0.1 "$redis_port" && break; sleep 0.1; done
redis_up 127.0.0.1 "$redis_port" || die "redis-server did not start; see $work/redis/redis.log"

head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$work/telnyx-seed"
telnyx_key=$("$abuse_bin" --telnyx-seed "$work/telnyx-seed" --print-telnyx-key)
( umask 077; printf 'bench-telnyx-api-key' > "$work/telnyx-api-key" )
to="tips@tips.bench"
{
  bench_config_base "$work" "$https_port" tipwire-bench-abuse
  cat <<TOML
[mediator]
public_base_url = "https://127.0.0.1:$https_port"
[sms]
public_base_url = "https://tips.bench"
numbers = ["+15550001111", "+15550002222"]
TOML
  bench_twilio_config "$work"
  cat <<TOML
[sms.telnyx]
enabled = true
public_key = "$telnyx_key"
api_key_file = "$work/telnyx-api-key"
messaging_profile_id = "bench"
api_base_url = "http://127.0.0.1:9"
TOML
  bench_email_config "$to" "$smtp_port"
} > "$work/bench.toml"
# The private Redis (bench_config_base names only the key prefix).
export TIPWIRE_REDIS__URL="redis://127.0.0.1:$redis_port/0"
export TIPWIRE_CONFIG="$work/bench.toml"
# Makes the certificate, the keys and one demo mediator for "north": web tips
# for "north" and every SMS and email tip ("not sure") are sealed to it and escrow.
"$bin" dev init --dir "$work" >/dev/null

bench_start_gateway "$bin" "$work" https_and_smtp_up "$https_port" "$smtp_port"
idle_rss=$(awk '/VmRSS/{printf "%.1f", $2 / 1024}' "/proc/$server_pid/status")
echo "gateway RSS ${idle_rss} MiB idle"
# Other work on the machine during the run (the figures are only as quiet as it).
busy() { ps -eo comm= | grep -cE '^(rustc|cc1|ld|cargo|node|chromium)' || true; }
others_before=$(busy)

status=0
"$abuse_bin" --config "$work/bench.toml" --ca "$work/tls/ca.pem" --telnyx-seed "$work/telnyx-seed" \
  --seconds "$secs" --rounds "$rounds" --rate "$rate" --server-pid "$server_pid" || status=$?

echo "$(nproc) cores; load average $load_before before the run, $(cut -d' ' -f1-3 /proc/loadavg) at its end;" \
  "compiler/build processes of others running: $others_before at the start, $(busy) at the end; $(date -u +%Y-%m-%dT%H:%MZ)"
if grep -q . "$work/serve.log"; then
  say "gateway log (distinct lines, counted):"
  # sed, not head: head's early exit is a SIGPIPE that pipefail would turn
  # into the script's exit status before the bench's own status is checked.
  sed -E 's/^[0-9TZ:.-]+ +//' "$work/serve.log" | sort | uniq -c | sort -rn | sed -n '1,20p' >&2
fi
[ "$status" = 0 ] || die "the abuse bench failed (exit $status)"
