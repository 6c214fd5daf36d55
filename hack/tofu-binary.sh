#!/usr/bin/env bash
# The Terraform-compatible binary for the Terraform integration tests: the
# OpenTofu release the kit pins (kit.DefaultTofuVersion, checked by
# internal/kit's tests), built from its Go module source into the cache
# (about 4 minutes, once). DROVER_TF_BIN names another binary instead
# (say /usr/local/bin/terraform), DROVER_TOFU_VERSION another release.
# Prints the binary's path on its last line.
set -euo pipefail

TOFU_VERSION="${DROVER_TOFU_VERSION:-$("$(dirname "$0")/tools.sh" version tofu)}"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/drover/tofu-$TOFU_VERSION"

if [[ -n "${DROVER_TF_BIN:-}" ]]; then
  echo "$DROVER_TF_BIN"
  exit 0
fi
if [[ -x "$CACHE/tofu" ]]; then
  echo "$CACHE/tofu"
  exit 0
fi
echo "tofu: building OpenTofu $TOFU_VERSION (the kit's pin) from its module source" >&2
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
