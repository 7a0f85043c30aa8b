#!/usr/bin/env bash
# Email intake benchmark. Prints, from one run on this machine, tips/s over
# SMTP (STARTTLS, one session per client connection, message after message)
# against tips/s through the web form (POST /tips over HTTPS, keep-alive) from
# the same concurrent client (benches/intake_load.rs), and their ratio per
# round and as the median; with the gateway's CPU time per message for each,
# its idle RSS and its RSS after the load.
# Figures vary with the machine's load: compare ratios, not absolutes.
#
# Both channels seal to the escrow key only (the demo mediator is removed, as
# in bench.sh's 1-recipient run): an emailed tip names no zone and would go to
# every mediator, a web tip for "north" only to that zone's.
#
# Rate limits are lifted, `email.max_connections_per_address` raised (every load
# connection comes from 127.0.0.1) and `email.max_commands` raised, so one SMTP session
# carries a whole load (at the default of 100 a client reconnects every ~33
# messages).
#
# scripts/bench-email.sh [SECONDS_PER_LOAD (default 8)] [CONCURRENCY (default 16)] [ROUNDS (default 3)]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$TIPWIRE_ROOT"

secs="${1:-8}"
conc="${2:-16}"
rounds="${3:-3}"
ensure_rust
ensure_redis
ensure_command python3 python3
ensure_command curl curl

say "building (release)"
cargo build --quiet --release --bin tipwire
cargo bench --quiet --bench intake_load --no-run 2>/dev/null
bin="$TIPWIRE_ROOT/target/release/tipwire"

work="$(mktemp -d)"
prefix="tipwire-bench-email-$$"
server_pid=""
trap 'bench_cleanup "$work" "$prefix" "$server_pid"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
https_port=$(free_port)
smtp_port=$(free_port)
while [ "$smtp_port" = "$https_port" ]; do smtp_port=$(free_port); done
to="tips@tips.bench"

{
  bench_config_head "$work" "$https_port" "$prefix" email
  cat <<TOML
[[zones]]
id = "north"
name = "North"
TOML
  bench_email_config "$to" "$smtp_port"
  cat <<TOML
max_commands = 1000000000
max_connections_per_address = 1000
TOML
} > "$work/bench.toml"
export TIPWIRE_CONFIG="$work/bench.toml"
"$bin" dev init --dir "$work" >/dev/null
# dev init enrols one demo mediator for "north"; remove it so both channels
# seal to the escrow key only.
"$bin" mediator list | awk '/^m_/{print $1}' | xargs -r -n1 "$bin" mediator remove >/dev/null

bench_start_gateway "$bin" "$work" https_and_smtp_up "$https_port" "$smtp_port"
rss_mb() { awk '/VmRSS/{printf "%.1f", $2 / 1024}' "/proc/$server_pid/status"; }
idle_rss=$(rss_mb)
stored_before=$(redis-cli xlen "$prefix:alerts")

say "web (POST /tips) then SMTP (STARTTLS), ${secs}s each, $conc connections, $rounds rounds"
cargo bench --quiet --bench intake_load -- \
  --smtp-port "$smtp_port" --https-port "$https_port" --ca "$work/tls/ca.pem" --to "$to" \
  --concurrency "$conc" --seconds "$secs" --rounds "$rounds" --server-pid "$server_pid" \
  | tee "$work/load.txt"

final_rss=$(rss_mb)
stored=$(( $(redis-cli xlen "$prefix:alerts") - stored_before ))
sent=$(awk -F'total=' '/^sent:/{print $2}' "$work/load.txt")
echo "tips stored by the gateway: $stored (of $sent sent)"
echo "gateway RSS: idle ${idle_rss} MB, after load ${final_rss} MB"
echo "$(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)"
# A 250 for a message taken as a retry stores nothing: every send must be a tip.
[ "$stored" = "$sent" ] || die "the gateway stored $stored tips for $sent successful sends"
# With the escrow key as the only recipient every tip logs a warning; show each
# distinct log line once, with its count, rather than one per tip.
if grep -q . "$work/serve.log"; then
  say "gateway log (distinct lines, counted):"
  sed -E 's/^[0-9TZ:.-]+ +//' "$work/serve.log" | sort | uniq -c | sort -rn | head -20 >&2
fi
