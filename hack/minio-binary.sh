#!/usr/bin/env bash
# Builds the MinIO server from its Go module at a pinned version into the
# cache (a few minutes, once): the real S3 server the Terraform S3 backend
# and the etcd snapshot upload are tested against. Prints the binary's path
# on its last line.
set -euo pipefail

V="${DROVER_MINIO_VERSION:-$("$(dirname "$0")/tools.sh" version minio)}"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/drover/minio-$V"
if [[ -x "$CACHE/minio" ]]; then
  echo "$CACHE/minio"
  exit 0
fi
echo "minio: building $V from its module source" >&2
mkdir -p "$CACHE"
tmp="$(mktemp -d)"
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
cd "$tmp"
dir="$(GOFLAGS=-mod=mod go mod download -json "github.com/minio/minio@$V" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
cp -r "$dir" src && chmod -R u+w src && cd src
go build -trimpath -ldflags "-s -w" -o "$CACHE/minio.tmp" .
mv "$CACHE/minio.tmp" "$CACHE/minio"
echo "$CACHE/minio"
