#!/usr/bin/env bash
# Installs one of the Go tools the tests run, at a pinned version, into
# the cache ($XDG_CACHE_HOME/drover/NAME-VERSION/NAME), once. Prints the
# binary's path on its last line.
#
#   hack/go-tool.sh goreleaser       release config check and snapshot build
#   hack/go-tool.sh cyclonedx-gomod  the release's SBOMs
#   hack/go-tool.sh act              the kit's workflows under nektos/act
#   hack/go-tool.sh golangci-lint    make vet's linter (.golangci.yml)
#   hack/go-tool.sh gremlins         make mutate's mutation testing
set -euo pipefail

case "${1:-}" in
  goreleaser)      mod=github.com/goreleaser/goreleaser/v2 ;;
  cyclonedx-gomod) mod=github.com/CycloneDX/cyclonedx-gomod/cmd/cyclonedx-gomod ;;
  act)             mod=github.com/nektos/act ;;
  golangci-lint)   mod=github.com/golangci/golangci-lint/v2/cmd/golangci-lint ;;
  gremlins)        mod=github.com/go-gremlins/gremlins/cmd/gremlins ;;
  *) echo "usage: $0 goreleaser|cyclonedx-gomod|act|golangci-lint|gremlins" >&2; exit 2 ;;
esac
name="$1"
v="$("$(dirname "$0")/tools.sh" version "$name")"  # the version: internal/testenv/tools.tsv
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/drover/$name-$v"
if [[ -x "$CACHE/$name" ]]; then
  echo "$CACHE/$name"
  exit 0
fi
echo "$name: go install $mod@$v" >&2
mkdir -p "$CACHE"
GOBIN="$CACHE/.tmp" go install -trimpath "$mod@$v"
mv "$CACHE/.tmp/$name" "$CACHE/$name"
rmdir "$CACHE/.tmp"
echo "$CACHE/$name"
