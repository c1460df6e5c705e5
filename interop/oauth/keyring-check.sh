#!/usr/bin/env bash
# Runs inside `dbus-run-session`: starts GNOME Keyring's Secret Service
# (unlocked with a throwaway password), then checks that `mcpgate connect`
# keeps its token cache key there and not on disk.
#
#   dbus-run-session -- keyring-check.sh PYTHON MCPGATE URL CACHE_DIR CLIENT_ID EXPECT
#   (the client secret in $MCPGATE_CLIENT_SECRET)
#
# 1. a client-credentials session through the bridge works;
# 2. the cache directory has no key file, only the "in keyring" marker, and
#    secret-tool finds the key under service mcpgate-connect;
# 3. a second bridge with a wrong secret still works: it decrypted the kept
#    token with the key from the keyring.
set -euo pipefail
python="$1" mcpgate="$2" url="$3" cache="$4" client_id="$5" expect="$6"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# A keyring of its own: GNOME Keyring keeps its files under $XDG_DATA_HOME,
# so a user's (or an earlier run's) login keyring is never touched or needed.
keyrings="$(mktemp -d)"
trap 'rm -rf "$keyrings"' EXIT
export XDG_DATA_HOME="$keyrings"
printf '%s' "interop-keyring-$$" | gnome-keyring-daemon --unlock --components=secrets >/dev/null
session() {
  "$python" "$here/connect_session.py" --expect "$expect" -- \
    "$mcpgate" connect "$url" --grant client-credentials --client-id "$client_id" --cache-dir "$cache"
}
session
if [[ -e "$cache/cache.key" ]]; then
  echo "keyring-check: the cache key was written to $cache/cache.key, not the keyring" >&2
  exit 1
fi
[[ -e "$cache/cache.key.in-keyring" ]] || { echo "keyring-check: no in-keyring marker" >&2; exit 1; }
found="$(secret-tool search --all service mcpgate-connect 2>&1 | grep -c '^attribute.username = cache-key-' || true)"
echo "keyring entries for mcpgate-connect: $found"
[[ "$found" -ge 1 ]] || { echo "keyring-check: secret-tool finds no cache key" >&2; exit 1; }
MCPGATE_CLIENT_SECRET="not-the-secret" session
echo "keyring-check: ok"
