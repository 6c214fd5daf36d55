#!/usr/bin/env bash
# The tools the tests run, from the one table (internal/testenv/tools.tsv):
#
#   hack/tools.sh version NAME   the pinned version of NAME
#   hack/tools.sh env [FOR]      builds (or finds in the cache) every tool
#                                for FOR (default test) and prints
#                                VARIABLE=PATH for each, one per line
#   hack/tools.sh list           the table, for people
#
# make test runs `hack/tools.sh env` before go test; go test alone finds
# the same tools in the cache (internal/testenv reads the same table).
set -euo pipefail
cd "$(dirname "$0")/.."
TABLE=internal/testenv/tools.tsv
rows() { grep -v '^#' "$TABLE" | grep -v '^[[:space:]]*$'; }

case "${1:-}" in
  version)
    v="$(rows | awk -F'\t' -v n="${2:-}" '$1 == n { print $2 }')"
    [[ -n "$v" ]] || { echo "hack/tools.sh: no tool ${2:-} in $TABLE" >&2; exit 2; }
    echo "$v"
    ;;
  env)
    want="${2:-test}"
    rows | while IFS=$'\t' read -r name version variable cache build for; do
      [[ "$for" == "$want" ]] || continue
      # shellcheck disable=SC2086 # the build column is a command and its arguments
      path="$($build </dev/null | tail -n 1)"
      [[ "$variable" == "-" ]] || echo "$variable=$path"
    done
    ;;
  list)
    rows | awk -F'\t' '{ printf "%-16s %-40s %-26s %s\n", $1, $2, $3, $5 }'
    ;;
  *)
    echo "usage: hack/tools.sh version NAME | env [test|vet|mutate|bench] | list" >&2
    exit 2
    ;;
esac
