#!/usr/bin/env bash
# Live alert benchmark (issue 5, acceptance 5). Enrols DEVICES mediator
# devices, opens one alert stream (SSE over TLS, HTTP/1.1) per device, and
# sends signed Twilio webhooks at RATE a second; prints the time from each
# webhook's 200 to the alert event on every open stream (p50/p99/max), the
# same with a single open stream (the baseline, alternating with it in the
# same run) and their ratio, and the gateway's RSS idle, with every stream
# open, and after the load (benches/alert_fanout.rs does the measuring).
# Before that it measures the sealing-only ceiling for as many recipients as
# an SMS tip has here, since SMS tips name no zone and go to every device.
# Figures vary with the machine's load: compare ratios, not absolutes.
#
# Rate limits are lifted and sessions last two hours, so neither the limits
# nor an idle timeout ends a stream mid-run.
#
# scripts/bench-alerts.sh [--escrow-only] [SECONDS_PER_LOAD (default 20)] [ROUNDS (default 3)] [DEVICES (default 1000)] [RATE (default 100)]
#
# --escrow-only is a diagnostic, not the product's behaviour: the devices
# leave the mediator directory once enrolled (their streams stay), so tips
# are sealed to escrow only and the figures show the fan-out without sealing.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$TIPWIRE_ROOT"

diagnostic=()
if [ "${1:-}" = --escrow-only ]; then
  diagnostic=(--escrow-only)
  shift
fi

secs="${1:-20}"
rounds="${2:-3}"
devices="${3:-1000}"
rate="${4:-100}"
ensure_rust
ensure_redis
ensure_command python3 python3
ensure_command curl curl

# A stream is a socket at each end; both processes run under this limit.
need_fds=$((devices + 500))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$need_fds" ]; then
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  [ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge "$need_fds" ] \
    || die "$devices streams need about $need_fds open files; ulimit -n allows $(ulimit -n)"
fi

say "building (release)"
cargo build --quiet --release --bin tipwire
cargo bench --quiet --bench sealing --bench alert_fanout --no-run 2>/dev/null
bin="$TIPWIRE_ROOT/target/release/tipwire"
newest_bench() {
  find "$TIPWIRE_ROOT/target/release/deps" -maxdepth 1 -type f -executable -name "$1-*" -printf '%T@ %p\n' \
    | sort -n | tail -1 | cut -d' ' -f2
}
seal_bin=$(newest_bench sealing)
fanout_bin=$(newest_bench alert_fanout)
[ -x "$seal_bin" ] && [ -x "$fanout_bin" ] || die "bench binaries not built"

work="$(mktemp -d)"
prefix="tipwire-bench-alerts-$$"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  redis-cli --scan --pattern "$prefix:*" | xargs -r -n 500 redis-cli del >/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
{
  cat <<TOML
[server]
port = $port
[tls]
cert_path = "$work/tls/cert.pem"
key_path = "$work/tls/key.pem"
[keys]
dir = "$work/keys"
[redis]
key_prefix = "$prefix"
[log]
filter = "warn"
[mediator]
session_ttl_secs = 7200
[rate_limits.web]
per_client = { count = 1000000000, per_secs = 1 }
global = { count = 1000000000, per_secs = 1 }
[rate_limits.sms]
per_client = { count = 1000000000, per_secs = 1 }
global = { count = 1000000000, per_secs = 1 }
[sms]
public_base_url = "https://tips.bench"
numbers = ["+15550001111"]
[sms.twilio]
enabled = true
account_sid = "AC00000000000000000000000000000001"
auth_token_files = ["$work/twilio-token"]
api_base_url = "http://127.0.0.1:9"
TOML
  for i in $(seq -w 1 10); do
    printf '[[zones]]\nid = "zone-%s"\nname = "Zone %s"\n' "$i" "$i"
  done
} > "$work/bench.toml"
( umask 077; printf 'bench-auth-token' > "$work/twilio-token" )
export TIPWIRE_CONFIG="$work/bench.toml"
"$bin" dev init --dir "$work" >/dev/null
# dev init enrols one demo mediator; remove it so the devices enrolled here
# (and escrow) are the only recipients.
"$bin" mediator list | awk '/^m_/{print $1}' | xargs -r -n1 "$bin" mediator remove >/dev/null

if [ ${#diagnostic[@]} -eq 0 ]; then
  say "sealing only, $((devices + 1)) recipients (every device and escrow), all cores, 5 s"
  "$seal_bin" --recipients $((devices + 1)) --seconds 5
fi

"$bin" serve 2>"$work/serve.log" &
server_pid=$!
up=""
for _ in $(seq 1 100); do
  if curl -skf "https://127.0.0.1:$port/healthz" >/dev/null 2>&1; then
    up=1
    break
  fi
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$up" ]; then
  cat "$work/serve.log" >&2
  die "the gateway did not come up on port $port"
fi
sleep 1
idle_rss=$(awk '/VmRSS/{printf "%.1f", $2 / 1024}' "/proc/$server_pid/status")
echo "gateway RSS ${idle_rss} MB (idle, nothing enrolled)"
stored_before=$(redis-cli xlen "$prefix:alerts")

say "alert fan-out: $devices devices and streams, $rate webhooks/s, ${secs}s per load, $rounds rounds"
status=0
"$fanout_bin" --config "$work/bench.toml" --ca "$work/tls/ca.pem" --devices "$devices" \
  --rate "$rate" --seconds "$secs" --rounds "$rounds" --server-pid "$server_pid" "${diagnostic[@]}" \
  | tee "$work/fanout.txt" || status=$?

stored=$(( $(redis-cli xlen "$prefix:alerts") - stored_before ))
sent=$(awk -F'total=' '/^accepted:/{print $2}' "$work/fanout.txt")
echo "tips stored by the gateway: $stored (of ${sent:-?} webhooks accepted)"
echo "$(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)"
if grep -q . "$work/serve.log"; then
  say "gateway log (distinct lines, counted):"
  sed -E 's/^[0-9TZ:.-]+ +//' "$work/serve.log" | sort | uniq -c | sort -rn | head -20 >&2
fi
[ "$status" = 0 ] || die "the fan-out client failed (exit $status)"
[ "$stored" = "$sent" ] || die "the gateway stored $stored tips for $sent accepted webhooks"
