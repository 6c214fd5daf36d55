#!/usr/bin/env bash
# Builds the real control-plane binaries the integration tests run
# (kube-apiserver, kube-controller-manager, kube-scheduler, etcd) from their
# Go modules, and
# caches them outside the repository, keyed by version. Only the first run
# pays the build (about 11 minutes on 2 cores); later runs reuse the cache.
#
# Prints the directory that holds the binaries on its last line.
set -euo pipefail

K8S_VERSION="${DROVER_TESTENV_K8S_VERSION:-$("$(dirname "$0")/tools.sh" version control-plane)}"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/drover/testenv"
BIN="$CACHE/bin-k8s-$K8S_VERSION"
SRC="$CACHE/src-k8s-$K8S_VERSION"

COMPONENTS=(kube-apiserver kube-controller-manager kube-scheduler)
missing=0
for b in etcd "${COMPONENTS[@]}"; do
  [[ -x "$BIN/$b" ]] || missing=1
done
if [[ $missing == 0 ]]; then
  echo "$BIN"
  exit 0
fi

staging_version="v0.${K8S_VERSION#v1.}"
mkdir -p "$SRC" "$BIN"
cd "$SRC"
gomod="$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
{
  echo "module drover.local/testenv"
  echo
  echo "go 1.26"
  echo
  echo "require k8s.io/kubernetes $K8S_VERSION"
  echo
  # Every k8s.io staging module that kubernetes requires at v0.0.0 (a local
  # replace in its own repo) comes from the module proxy at the matching tag.
  sed -n 's/^[[:space:]]*\(k8s\.io\/[a-z0-9-]*\) v0\.0\.0$/\1/p' "$gomod" | sort -u |
    while read -r m; do echo "replace $m => $m $staging_version"; done
} > go.mod
cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "go.etcd.io/etcd/server/v3/etcdmain"
	_ "k8s.io/kubernetes/cmd/kube-apiserver/app"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	_ "k8s.io/kubernetes/cmd/kube-scheduler/app"
)
GO
mkdir -p etcd
cat > etcd/main.go <<'GO'
// Command etcd runs etcd's own main.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
echo "testenv: resolving modules for kubernetes $K8S_VERSION" >&2
GOFLAGS=-mod=mod go mod tidy >&2

minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
pkg=k8s.io/component-base/version
ldflags="-s -w -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
if [[ ! -x "$BIN/etcd" ]]; then
  echo "testenv: building etcd" >&2
  go build -trimpath -o "$BIN/etcd.tmp" ./etcd && mv "$BIN/etcd.tmp" "$BIN/etcd"
fi
for c in "${COMPONENTS[@]}"; do
  [[ -x "$BIN/$c" ]] && continue
  echo "testenv: building $c $K8S_VERSION (slow the first time)" >&2
  go build -trimpath -ldflags "$ldflags" -o "$BIN/$c.tmp" "k8s.io/kubernetes/cmd/$c" && mv "$BIN/$c.tmp" "$BIN/$c"
done
echo "$BIN"
