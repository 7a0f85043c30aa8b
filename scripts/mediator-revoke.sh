#!/usr/bin/env bash
# tipwire mediator revoke, with the configuration in $TIPWIRE_CONFIG (default:
# /etc/tipwire/tipwire.toml when it exists). See `tipwire mediator revoke --help`.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
if [ -z "${TIPWIRE_CONFIG:-}" ] && [ -f /etc/tipwire/tipwire.toml ]; then
  export TIPWIRE_CONFIG=/etc/tipwire/tipwire.toml
fi
exec "$(tipwire_bin)" mediator revoke "$@"
