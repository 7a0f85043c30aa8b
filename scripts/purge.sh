#!/usr/bin/env bash
# tipwire purge, with the configuration in $TIPWIRE_CONFIG (default:
# /etc/tipwire/tipwire.toml when it exists). See `tipwire purge --help`.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
if [ -z "${TIPWIRE_CONFIG:-}" ] && [ -f /etc/tipwire/tipwire.toml ]; then
  export TIPWIRE_CONFIG=/etc/tipwire/tipwire.toml
fi
exec "$(tipwire_bin)" purge "$@"
