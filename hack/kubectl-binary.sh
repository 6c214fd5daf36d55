#!/usr/bin/env bash
# Builds kubectl from the kubernetes module at the control plane's version
# (the one hack/testenv-binaries.sh builds), for `make bench` to compare
# drover's drain with `kubectl drain` on the same API server. Cached next to
# the control-plane binaries; prints the binary's path on its last line.
set -euo pipefail

K8S_VERSION="${DROVER_TESTENV_K8S_VERSION:-$("$(dirname "$0")/tools.sh" version kubectl)}"
BIN="$(hack/testenv-binaries.sh | tail -n 1)"
SRC="${XDG_CACHE_HOME:-$HOME/.cache}/drover/testenv/src-k8s-$K8S_VERSION"
if [[ ! -x "$BIN/kubectl" ]]; then
  minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
  ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags="$ldflags -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  done
  echo "kubectl: building $K8S_VERSION (once)" >&2
  (cd "$SRC" && GOFLAGS=-mod=mod go build -trimpath -ldflags "$ldflags" -o "$BIN/kubectl.tmp" k8s.io/kubernetes/cmd/kubectl) && mv "$BIN/kubectl.tmp" "$BIN/kubectl"
fi
echo "$BIN/kubectl"
