#!/usr/bin/env bash
# Mutation testing (gremlins v0.6.0, pinned, cached) of the packages whose
# tests need no control plane. Fails when a package's efficacy (killed over
# killed + lived mutants) is under the threshold (default 85%).
# hack/mutate.sh ./internal/plan runs one package.
set -euo pipefail
THRESHOLD="${MUTATE_THRESHOLD:-85}"
gremlins="$(hack/go-tool.sh gremlins | tail -n 1)"
status=0
pkgs=("$@")
if [[ ${#pkgs[@]} == 0 ]]; then
  pkgs=(./internal/rollout ./internal/plan ./internal/version ./internal/config ./internal/secrets ./internal/journal)
fi
for pkg in "${pkgs[@]}"; do
  echo "== $pkg"
  # The journal's Kubernetes parts (ConfigMap journal, Lease lock) need the
  # control plane: gremlins runs their package's tests without it, so only
  # the pure parts (the chain, the file journal, the resume reading) count.
  excl=()
  if [[ $pkg == ./internal/journal ]]; then excl=(-E 'configmap\.go$' -E 'lock\.go$' -E 'durations\.go$'); fi
  # No control plane: the integration tests skip (a missing binary directory).
  out="$(env -u DROVER_TESTENV_REQUIRED DROVER_TESTENV_BIN=/nonexistent "$gremlins" unleash --workers 2 "${excl[@]}" "$pkg" 2>&1)" || true
  echo "$out" | grep -E '^ *LIVED|Killed:|Timed out|Test efficacy|Mutator coverage' || true
  eff="$(echo "$out" | sed -n 's/^Test efficacy: \([0-9.]*\)%.*/\1/p')"
  if [[ -z "$eff" ]] || awk -v e="$eff" -v t="$THRESHOLD" 'BEGIN { exit !(e < t) }'; then
    echo "!! $pkg: efficacy ${eff:-unknown}% is under ${THRESHOLD}%"
    status=1
  fi
done
exit $status
