#!/usr/bin/env bash
# Installs the pinned npm package renovate, which ships
# renovate-config-validator, into the cache (about a minute, once), and
# prints the validator's path on its last line.
set -euo pipefail
V="${DROVER_RENOVATE_VERSION:-$("$(dirname "$0")/tools.sh" version renovate)}"
DIR="${XDG_CACHE_HOME:-$HOME/.cache}/drover/renovate-$V"
BIN="$DIR/node_modules/.bin/renovate-config-validator"
if [[ ! -x "$BIN" ]]; then
  command -v npm >/dev/null || { echo "renovate: npm is not installed (apt-get install npm)" >&2; exit 1; }
  mkdir -p "$DIR"
  echo "renovate: installing renovate@$V (renovate-config-validator)" >&2
  (cd "$DIR" && npm install --no-audit --no-fund --loglevel=error "renovate@$V" >&2)
fi
echo "$BIN"
