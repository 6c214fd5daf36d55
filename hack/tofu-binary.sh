#!/usr/bin/env bash
# Finds a Terraform-compatible binary for the Terraform integration tests:
# `tofu` or `terraform` on PATH, else OpenTofu built from its Go module
# source at a pinned version into the cache (about 4 minutes, once).
# Prints the binary's path on its last line.
set -euo pipefail

TOFU_VERSION="${DROVER_TOFU_VERSION:-v1.10.10}"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/drover/tofu-$TOFU_VERSION"

for b in tofu terraform; do
  if p="$(command -v "$b")"; then
    echo "$p"
    exit 0
  fi
done
if [[ -x "$CACHE/tofu" ]]; then
  echo "$CACHE/tofu"
  exit 0
fi
echo "tofu: neither tofu nor terraform on PATH; building OpenTofu $TOFU_VERSION from its module source" >&2
mkdir -p "$CACHE"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
dir="$(GOFLAGS=-mod=mod go mod download -json "github.com/opentofu/opentofu@$TOFU_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
# The module has a replace directive, so `go install` refuses it; build
# inside a writable copy of the module directory instead.
cp -r "$dir" src && chmod -R u+w src && cd src
go build -trimpath -ldflags "-s -w -X github.com/opentofu/opentofu/version.dev=no" -o "$CACHE/tofu.tmp" ./cmd/tofu
mv "$CACHE/tofu.tmp" "$CACHE/tofu"
echo "$CACHE/tofu"
