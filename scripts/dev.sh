#!/usr/bin/env bash
# Runs the gateway locally at https://localhost:8443: starts Redis if none is
# running (installing it from Debian's packages if missing), builds the
# mediator app (web/mediator/dist) and tipwire,
# makes dev keys, a dev TLS certificate and a demo mediator under .dev/, then
# serves with config/dev.toml until Ctrl-C.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$TIPWIRE_ROOT"

ensure_rust
ensure_redis
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

MSG
exec "$bin" serve
