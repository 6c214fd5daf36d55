#!/usr/bin/env bash
# Builds Alertmanager from its Go module at a pinned version into the cache
# (about a minute, once), for the health gate's alert tests. Prints the
# binary's path on its last line.
#
# The module ships without its web UI's generated assets (ui/app/dist),
# which the binary embeds; the build gets empty placeholders for them. The
# API the tests use is unaffected.
set -euo pipefail

V="${DROVER_ALERTMANAGER_VERSION:-$("$(dirname "$0")/tools.sh" version alertmanager)}"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/drover/alertmanager-$V"
if [[ -x "$CACHE/alertmanager" ]]; then
  echo "$CACHE/alertmanager"
  exit 0
fi
echo "alertmanager: building $V from its module source" >&2
mkdir -p "$CACHE"
tmp="$(mktemp -d)"
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
cd "$tmp"
dir="$(GOFLAGS=-mod=mod go mod download -json "github.com/prometheus/alertmanager@$V" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
cp -r "$dir" src && chmod -R u+w src && cd src
for ui in elm mantine; do
  mkdir -p "ui/app/dist/$ui"
  echo "<!-- drover test build: no web UI -->" > "ui/app/dist/$ui/index.html"
done
go build -trimpath -ldflags "-s -w -X github.com/prometheus/common/version.Version=${V#v}" -o "$CACHE/alertmanager.tmp" ./cmd/alertmanager
mv "$CACHE/alertmanager.tmp" "$CACHE/alertmanager"
echo "$CACHE/alertmanager"
