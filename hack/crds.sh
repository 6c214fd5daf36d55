#!/usr/bin/env bash
# Collects the upstream CRDs the kit's manifests and the health gate use,
# from the projects' own Go modules at exact versions, into the cache (once).
# Prints the directory on its last line.
#
#   Flux kustomize-controller and source-controller v1.10.1: their go.mod
#   asks for Go 1.27, so `go mod download` runs with GOTOOLCHAIN=go1.27.3,
#   which fetches only that toolchain (drover itself stays on Go 1.26);
#   helm-controller v1.6.0 (the newest the module proxy serves);
#   External Secrets v1.3.2; Rook v1.18.6 (the checksum database does not
#   list it, so it is fetched with GONOSUMDB: it is only read for its CRD
#   YAML, never built).
set -euo pipefail

KUSTOMIZE=v1.10.1 SOURCE=v1.10.1 HELM=v1.6.0 ESO=v1.3.2 ROOK=v1.18.6
# The table (internal/testenv/tools.tsv) keys the cache by these versions.
want="$("$(dirname "$0")/tools.sh" version crds)"
if [[ "$want" != "kc$KUSTOMIZE-sc$SOURCE-hc$HELM-eso$ESO-rook$ROOK" ]]; then
  echo "crds: internal/testenv/tools.tsv says $want, this script kc$KUSTOMIZE-sc$SOURCE-hc$HELM-eso$ESO-rook$ROOK: make them agree" >&2
  exit 2
fi
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/drover/crds-$want"
if [[ -f "$CACHE/.complete" ]]; then
  echo "$CACHE"
  exit 0
fi
echo "crds: collecting the upstream CRDs from their modules" >&2
mkdir -p "$CACHE"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
dir() { # MODULE@VERSION [env...]: the module's directory in the module cache
  local mv="$1"; shift
  env "$@" GOFLAGS=-mod=mod go mod download -json "$mv" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p'
}
kc="$(dir github.com/fluxcd/kustomize-controller@$KUSTOMIZE GOTOOLCHAIN=go1.27.3)"
sc="$(dir github.com/fluxcd/source-controller@$SOURCE GOTOOLCHAIN=go1.27.3)"
hc="$(dir github.com/fluxcd/helm-controller@$HELM)"
eso="$(dir github.com/external-secrets/external-secrets@$ESO)"
rook="$(dir github.com/rook/rook@$ROOK GONOSUMDB=github.com/rook/rook)"
install -m 0644 "$kc/config/crd/bases/kustomize.toolkit.fluxcd.io_kustomizations.yaml" "$CACHE/"
install -m 0644 "$sc/config/crd/bases/source.toolkit.fluxcd.io_ocirepositories.yaml" "$CACHE/"
install -m 0644 "$hc/config/crd/bases/helm.toolkit.fluxcd.io_helmreleases.yaml" "$CACHE/"
install -m 0644 "$eso/config/crds/bases/external-secrets.io_externalsecrets.yaml" "$CACHE/"
# Rook's CRDs come as one file; keep the CephCluster's.
awk 'BEGIN{RS="\n---\n"} /\n  name: cephclusters.ceph.rook.io\n/ {print; exit}' "$rook/deploy/examples/crds.yaml" > "$CACHE/ceph.rook.io_cephclusters.yaml"
test -s "$CACHE/ceph.rook.io_cephclusters.yaml"
touch "$CACHE/.complete"
echo "$CACHE"
