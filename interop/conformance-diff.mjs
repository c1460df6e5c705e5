#!/usr/bin/env node
// Compares two result trees written by `conformance server -o DIR` check by
// check and prints a table; exits 1 if any verdict differs, 2 on bad input.
//
//   node conformance-diff.mjs [--label-a NAME] [--label-b NAME] [--json FILE]
//       [--expected-diffs FILE] DIR_A DIR_B
//
// Each DIR holds one subdirectory per requirement set (any name, e.g.
// `2025-11-25`), each holding the suite's `server-<scenario>-<timestamp>/checks.json`
// directories; a DIR may also hold the scenario directories directly.
// A check id can occur several times in one scenario; its occurrences
// collapse to one verdict, most severe first, as the suite's baselines do.
//
// --expected-diffs names checks whose B verdict is known to differ from A on
// purpose, one per line: `SET SCENARIO CHECK B_VERDICT  # reason` (`#` lines
// and blank lines are ignored). A listed check is reported as an expected
// difference when B has exactly that verdict and A another; it is still a
// difference when B has another verdict, and a stale entry (no difference
// seen) fails the comparison, so the list cannot quietly outlive its reason.

import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const SEVERITY = ["FAILURE", "WARNING", "SKIPPED", "INFO", "SUCCESS"];
const SCENARIO_DIR = /^server-(.+)-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z$/;

function usage(message) {
  console.error(`conformance-diff: ${message}`);
  console.error(
    "usage: conformance-diff.mjs [--label-a NAME] [--label-b NAME] [--json FILE] DIR_A DIR_B",
  );
  process.exit(2);
}

function parseArgs(argv) {
  const opts = { labelA: "A", labelB: "B", json: null, expected: null, dirs: [] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--label-a") opts.labelA = argv[++i];
    else if (arg === "--label-b") opts.labelB = argv[++i];
    else if (arg === "--json") opts.json = argv[++i];
    else if (arg === "--expected-diffs") opts.expected = argv[++i];
    else if (arg.startsWith("--")) usage(`unknown option ${arg}`);
    else opts.dirs.push(arg);
  }
  if (opts.dirs.length !== 2) usage("need exactly two result directories");
  return opts;
}

function isDir(path) {
  return existsSync(path) && statSync(path).isDirectory();
}

function worst(a, b) {
  const rank = (s) => (SEVERITY.includes(s) ? SEVERITY.indexOf(s) : -1);
  return rank(a) <= rank(b) ? a : b;
}

// Returns Map<"set\tscenario\tcheck", {verdict, count, message}>.
function load(root) {
  if (!isDir(root)) usage(`${root} is not a directory`);
  const results = new Map();
  const readScenarios = (dir, set) => {
    for (const name of readdirSync(dir).sort()) {
      const m = SCENARIO_DIR.exec(name);
      const file = join(dir, name, "checks.json");
      if (!m || !existsSync(file)) continue;
      const scenario = m[1];
      let checks;
      try {
        checks = JSON.parse(readFileSync(file, "utf8"));
      } catch (err) {
        usage(`${file}: ${err.message}`);
      }
      if (!Array.isArray(checks)) usage(`${file}: expected an array of checks`);
      if (checks.length === 0) {
        // A scenario that ran and emitted nothing is still a result to compare.
        results.set(`${set}\t${scenario}\t(no checks)`, { verdict: "EMPTY", count: 1, message: "" });
      }
      for (const check of checks) {
        const key = `${set}\t${scenario}\t${check.id}`;
        const prev = results.get(key);
        const message = check.errorMessage ?? "";
        if (!prev) {
          results.set(key, { verdict: check.status, count: 1, message });
        } else {
          const verdict = worst(prev.verdict, check.status);
          results.set(key, {
            verdict,
            count: prev.count + 1,
            message: verdict === prev.verdict ? prev.message : message,
          });
        }
      }
    }
  };
  const subdirs = readdirSync(root).filter((n) => isDir(join(root, n)) && !SCENARIO_DIR.test(n));
  readScenarios(root, "-");
  for (const set of subdirs.sort()) readScenarios(join(root, set), set);
  if (results.size === 0) usage(`${root} holds no checks.json results`);
  return results;
}

// Returns Map<"set\tscenario\tcheck", {verdict, reason}>.
function loadExpected(file) {
  const expected = new Map();
  if (!file) return expected;
  if (!existsSync(file)) usage(`${file} does not exist`);
  readFileSync(file, "utf8")
    .split("\n")
    .forEach((raw, n) => {
      const [entry, ...comment] = raw.split("#");
      const fields = entry.trim().split(/\s+/).filter(Boolean);
      if (fields.length === 0) return;
      if (fields.length !== 4 || !SEVERITY.includes(fields[3])) {
        usage(`${file}:${n + 1}: expected "SET SCENARIO CHECK VERDICT  # reason"`);
      }
      const [set, scenario, check, verdict] = fields;
      expected.set(`${set}\t${scenario}\t${check}`, { verdict, reason: comment.join("#").trim() });
    });
  return expected;
}

function direction(a, b) {
  if (a === undefined) return `only in ${opts.labelB}`;
  if (b === undefined) return `only in ${opts.labelA}`;
  if (a === "SUCCESS" && b !== "SUCCESS") return "regression";
  if (a !== "SUCCESS" && b === "SUCCESS") return "improvement";
  return "changed";
}

const opts = parseArgs(process.argv.slice(2));
const a = load(opts.dirs[0]);
const b = load(opts.dirs[1]);
const expected = loadExpected(opts.expected);
const keys = [...new Set([...a.keys(), ...b.keys(), ...expected.keys()])].sort();

const rows = keys.map((key) => {
  const [set, scenario, check] = key.split("\t");
  const ra = a.get(key);
  const rb = b.get(key);
  const same = ra?.verdict === rb?.verdict;
  const exp = expected.get(key);
  // expected: the listed difference was seen; stale: it was listed, not seen.
  const expectedDiff = Boolean(exp && !same && rb?.verdict === exp.verdict);
  const stale = Boolean(exp && same);
  return {
    set,
    scenario,
    check,
    a: ra?.verdict ?? "(absent)",
    b: rb?.verdict ?? "(absent)",
    same,
    expectedDiff,
    stale,
    reason: exp?.reason ?? null,
    direction: same ? null : direction(ra?.verdict, rb?.verdict),
    messageA: ra?.message ?? "",
    messageB: rb?.message ?? "",
  };
});

const header = ["set", "scenario", "check", opts.labelA, opts.labelB, ""];
const note = (r) =>
  r.stale
    ? "<-- STALE expected-diffs entry"
    : r.expectedDiff
      ? `expected difference (${r.direction})`
      : r.same
        ? ""
        : `<-- DIFFERS (${r.direction})`;
const table = rows.map((r) => [r.set, r.scenario, r.check, r.a, r.b, note(r)]);
const widths = header.map((h, i) => Math.max(h.length, ...table.map((row) => row[i].length)));
const line = (cells) => cells.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd();
console.log(line(header));
console.log(line(widths.map((w) => "-".repeat(w))));
for (const row of table) console.log(line(row));

const differing = rows.filter((r) => (!r.same && !r.expectedDiff) || r.stale);
const expectedSeen = rows.filter((r) => r.expectedDiff);
const count = (side, verdict) => rows.filter((r) => r[side] === verdict).length;
console.log("");
console.log(
  `${rows.length} checks: ${opts.labelA} ${count("a", "SUCCESS")} SUCCESS / ${count("a", "FAILURE")} FAILURE, ` +
    `${opts.labelB} ${count("b", "SUCCESS")} SUCCESS / ${count("b", "FAILURE")} FAILURE; ` +
    `${differing.length} verdict(s) differ unexpectedly, ${expectedSeen.length} as expected`,
);
for (const r of expectedSeen) {
  console.log(`EXPECTED DIFF ${r.set} ${r.scenario} ${r.check}: ${opts.labelA}=${r.a} ${opts.labelB}=${r.b}: ${r.reason}`);
}
for (const r of differing) {
  const what = r.stale ? `stale expected-diffs entry, no difference seen (${r.reason})` : r.direction;
  console.log(`\nDIFF ${r.set} ${r.scenario} ${r.check}: ${opts.labelA}=${r.a} ${opts.labelB}=${r.b} (${what})`);
  if (r.messageA) console.log(`  ${opts.labelA}: ${r.messageA}`);
  if (r.messageB) console.log(`  ${opts.labelB}: ${r.messageB}`);
}
if (opts.json) writeFileSync(opts.json, JSON.stringify({ labels: [opts.labelA, opts.labelB], rows }, null, 2));
process.exit(differing.length === 0 ? 0 : 1);
