#!/usr/bin/env bash
# Builds the Prometheus Pushgateway from its Go module at a pinned version
# into the cache (about a minute, once), for the metrics tests. Prints the
# binary's path on its last line.
set -euo pipefail

V="${DROVER_PUSHGATEWAY_VERSION:-$("$(dirname "$0")/tools.sh" version pushgateway)}"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/drover/pushgateway-$V"
if [[ -x "$CACHE/pushgateway" ]]; then
  echo "$CACHE/pushgateway"
  exit 0
fi
echo "pushgateway: building $V from its module source" >&2
mkdir -p "$CACHE"
tmp="$(mktemp -d)"
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
cd "$tmp"
dir="$(GOFLAGS=-mod=mod go mod download -json "github.com/prometheus/pushgateway@$V" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
cp -r "$dir" src && chmod -R u+w src && cd src
go build -trimpath -ldflags "-s -w -X github.com/prometheus/common/version.Version=${V#v}" -o "$CACHE/pushgateway.tmp" .
mv "$CACHE/pushgateway.tmp" "$CACHE/pushgateway"
echo "$CACHE/pushgateway"
