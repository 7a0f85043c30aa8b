#!/usr/bin/env bash
# Runs the gateway locally at https://localhost:8443: starts its own Redis on
# 127.0.0.1:6380 (AOF with fsync always, data in .dev/redis; installing
# redis-server from Debian's packages if missing) unless one runs there, builds the
# mediator app (web/mediator/dist) and tipwire,
# makes dev keys, a dev TLS certificate and a demo mediator under .dev/, then
# serves with config/dev.toml until Ctrl-C.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$TIPWIRE_ROOT"

ensure_rust
ensure_dev_redis
ensure_web
say "building tipwire"
cargo build --quiet --bin tipwire
bin="$TIPWIRE_ROOT/target/debug/tipwire"
export TIPWIRE_CONFIG="$TIPWIRE_ROOT/config/dev.toml"

"$bin" dev init --dir .dev
cat >&2 <<MSG

  tip page:        https://localhost:8443/   (dev CA: .dev/tls/ca.pem)
  tips by email:   tips@localhost via SMTP at 127.0.0.1:2525 (STARTTLS)
  demo mediator:   .dev/demo-mediator.identity  (zone "demo")
  read tips:       TIPWIRE_CONFIG=config/dev.toml $bin alerts tail --identity .dev/demo-mediator.identity
  metrics:         https://localhost:8443/metrics
  redis:           127.0.0.1:$DEV_REDIS_PORT, data in .dev/redis (stop: redis-cli -p $DEV_REDIS_PORT shutdown)

MSG
exec "$bin" serve
