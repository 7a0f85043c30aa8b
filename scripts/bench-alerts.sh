#!/usr/bin/env bash
# Live alert benchmark (issue 5, acceptance 5). Enrols DEVICES mediator
# devices (5 supervisors, the rest over ten zones), opens one alert stream
# (SSE over TLS, HTTP/1.1) per device, and sends signed Twilio webhooks at
# RATE a second to the zones' own program numbers (`sms.zone_numbers`), so
# each tip is filed under its zone: sealed to that zone's devices, the
# supervisors and escrow, and alerted on those streams only. Prints the time
# from each webhook's 200 to the alert event on every stream that should get
# it (p50/p99/max), the same with a single open stream (the baseline,
# alternating with it) and their ratio, and the gateway's RSS idle, with
# every stream open, and after each load (benches/alert_fanout.rs does the
# measuring).
#
# Then, as a secondary capacity figure, one load of texts to the program's
# unmapped number: filed under "not sure", each is sealed to every device and
# reaches every stream; the gateway accepts what its cores can seal, and the
# figure is that rate and the latency at it. Before the gateway starts, the
# sealing-only ceilings for both recipient counts.
# Figures vary with the machine's load: compare ratios, not absolutes.
#
# Rate limits are lifted and sessions last two hours, so neither the limits
# nor an idle timeout ends a stream mid-run.
#
# scripts/bench-alerts.sh [--not-sure] [--escrow-only] [SECONDS_PER_LOAD (default 20)] [ROUNDS (default 3)] [DEVICES (default 1000)] [RATE (default 100)]
#
# --not-sure measures only the all-devices case, with rounds and baselines
# (every text to the unmapped number).
# --escrow-only is a diagnostic, not the product's behaviour: the devices
# leave the mediator directory once enrolled (their streams stay), so tips
# are sealed to escrow only and the figures show the fan-out without sealing.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$TIPWIRE_ROOT"

flags=()
not_sure=""
escrow_only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --not-sure) not_sure=1; flags+=(--not-sure); shift ;;
    --escrow-only) escrow_only=1; flags+=(--escrow-only); shift ;;
    --*) die "unknown option $1" ;;
    *) break ;;
  esac
done

secs="${1:-20}"
rounds="${2:-3}"
devices="${3:-1000}"
rate="${4:-100}"
zones=10
supervisors=5
[ "$devices" -gt "$supervisors" ] || die "DEVICES must be more than the $supervisors supervisors"
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

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
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
trap 'bench_cleanup "$work" "$prefix" "$server_pid"' EXIT

# Zone i has the program number +155500010ii; +15550001111 is mapped to no
# zone, so texts to it are filed under "not sure".
unmapped="+15550001111"
zone_number() { printf '+155500010%02d' "$1"; }
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
{
  bench_config_head "$work" "$port" "$prefix" sms enrolment
  numbers="\"$unmapped\""
  for i in $(seq 1 "$zones"); do numbers="$numbers, \"$(zone_number "$i")\""; done
  cat <<TOML
[mediator]
session_ttl_secs = 7200
[sms]
public_base_url = "https://tips.bench"
numbers = [$numbers]
TOML
  bench_twilio_config "$work"
  echo '[sms.zone_numbers]'
  for i in $(seq 1 "$zones"); do printf '"%s" = "zone-%02d"\n' "$(zone_number "$i")" "$i"; done
  for i in $(seq 1 "$zones"); do
    printf '[[zones]]\nid = "zone-%02d"\nname = "Zone %02d"\n' "$i" "$i"
  done
} > "$work/bench.toml"
export TIPWIRE_CONFIG="$work/bench.toml"
"$bin" dev init --dir "$work" >/dev/null
# dev init enrols one demo mediator; remove it so the devices enrolled here
# (and escrow) are the only recipients.
"$bin" mediator list | awk '/^m_/{print $1}' | xargs -r -n1 "$bin" mediator remove >/dev/null

if [ -z "$escrow_only" ]; then
  # The largest zone's devices, the supervisors and escrow.
  zone_recipients=$(( (devices - supervisors + zones - 1) / zones + supervisors + 1 ))
  if [ -z "$not_sure" ]; then
    say "sealing only, $zone_recipients recipients (a zone tip: the largest zone, supervisors, escrow), all cores, 5 s"
    "$seal_bin" --recipients "$zone_recipients" --seconds 5
  fi
  say "sealing only, $((devices + 1)) recipients (a \"not sure\" tip: every device and escrow), all cores, 5 s"
  "$seal_bin" --recipients $((devices + 1)) --seconds 5
fi

bench_start_gateway "$bin" "$work" healthz_up "$port"
idle_rss=$(awk '/VmRSS/{printf "%.1f", $2 / 1024}' "/proc/$server_pid/status")
echo "gateway RSS ${idle_rss} MB (idle, nothing enrolled)"
stored_before=$(redis-cli xlen "$prefix:alerts")

extra=()
what="texts to the zones' numbers"
if [ -n "$not_sure" ]; then
  what="texts to the unmapped number (\"not sure\")"
else
  extra=(--not-sure-seconds "$secs")
fi
say "alert fan-out: $devices devices and streams, $rate $what a second, ${secs}s per load, $rounds rounds"
status=0
"$fanout_bin" --config "$work/bench.toml" --ca "$work/tls/ca.pem" --devices "$devices" \
  --supervisors "$supervisors" --rate "$rate" --seconds "$secs" --rounds "$rounds" \
  --server-pid "$server_pid" "${flags[@]}" "${extra[@]}" \
  | tee "$work/fanout.txt" || status=$?

stored=$(( $(redis-cli xlen "$prefix:alerts") - stored_before ))
sent=$(awk -F'total=' '/^accepted:/{print $2}' "$work/fanout.txt")
echo "tips stored by the gateway: $stored (of ${sent:-?} webhooks accepted)"
echo "$(nproc) cores, load average $load_before before the run, $(cut -d' ' -f1-3 /proc/loadavg) at its end; $(date -u +%Y-%m-%dT%H:%MZ)"
if grep -q . "$work/serve.log"; then
  say "gateway log (distinct lines, counted):"
  sed -E 's/^[0-9TZ:.-]+ +//' "$work/serve.log" | sort | uniq -c | sort -rn | head -20 >&2
fi
[ "$status" = 0 ] || die "the fan-out client failed (exit $status)"
[ "$stored" = "$sent" ] || die "the gateway stored $stored tips for $sent accepted webhooks"
