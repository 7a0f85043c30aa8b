#!/usr/bin/env bash
# Builds the mediator app (web/mediator/) into web/mediator/dist/, which the
# gateway embeds at compile time (build.rs): `npm ci` from the committed
# lockfile (exact versions; npm's cache kept in .dev/npm-cache), then esbuild
# (web/mediator/build.mjs: minified, ES2022, no source maps; set
# TIPWIRE_WEB_DEV=1 for readable code with source maps). scripts/test.sh and
# scripts/dev.sh run this when dist/ is missing or older than its sources.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

ensure_node
cd "$TIPWIRE_ROOT/web/mediator"
export npm_config_cache="$TIPWIRE_ROOT/.dev/npm-cache"
say "npm ci (web/mediator: age-encryption, esbuild)"
npm ci --no-audit --no-fund --loglevel=error
say "bundling the mediator app into web/mediator/dist"
node build.mjs
