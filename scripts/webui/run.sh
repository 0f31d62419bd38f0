#!/usr/bin/env bash
# Runs a browser driver (synapse-admin.mjs) against a throwaway Hearth: builds nothing, starts
# target/debug/hearth on a fresh data directory under /tmp, creates an admin account, runs the
# driver, stops Hearth. The web app's build and the driver's node_modules live outside the
# repository (WEBUI_SRC, default /work/webui-src); see "Web UIs" in README.md for preparing them.
#
#   scripts/webui/run.sh synapse-admin
set -euo pipefail

driver="${1:?usage: run.sh synapse-admin}"
repo="$(cd "$(dirname "$0")/../.." && pwd)"
src="${WEBUI_SRC:-/work/webui-src}"
hearth="${HEARTH_BIN:-$repo/target/debug/hearth}"
port="${HEARTH_PORT:-8018}"
work="$(mktemp -d /tmp/webui-hearth.XXXXXX)"
chmod 755 "$work" # the embedded PostgreSQL runs as `postgres` and must reach its directory

case "$driver" in
synapse-admin) app="$src/admin/dist" ;;
*) echo "unknown driver $driver" >&2; exit 2 ;;
esac
[ -f "$app/index.html" ] || { echo "no built app at $app (see README.md, Web UIs)" >&2; exit 2; }
[ -d "$src/driver/node_modules/playwright-core" ] ||
    npm install --prefix "$src/driver" --no-save playwright-core@1.57.0 >/dev/null

cat >"$work/hearth.toml" <<EOF
server_name = "localhost"
listen = ["127.0.0.1:$port"]
data_dir = "$work/data"
log = "info,hearth=debug"
[rate_limits]
enabled = false
[federation]
enabled = false
EOF

"$hearth" serve --config "$work/hearth.toml" >"$work/hearth.log" 2>&1 &
hearth_pid=$!
# Hearth stops its PostgreSQL on SIGTERM; the data goes, the log stays for reading.
trap 'kill $hearth_pid 2>/dev/null; wait $hearth_pid 2>/dev/null; rm -rf "$work/data"' EXIT
for _ in $(seq 1 120); do
    curl -sf "http://127.0.0.1:$port/_matrix/client/versions" >/dev/null && break
    sleep 0.5
done
password="admin-$RANDOM$RANDOM"
"$hearth" user create admin --admin --password "$password" --config "$work/hearth.toml" >/dev/null

started=$(date +%s)
status=0
HEARTH_URL="http://127.0.0.1:$port" WEBUI_APP_DIR="$app" WEBUI_DRIVER_DIR="$src/driver" \
    ADMIN_USER=admin ADMIN_PASSWORD="$password" SERVER_NAME=localhost \
    node "$repo/scripts/webui/$driver.mjs" || status=$?
echo "driver took $(($(date +%s) - started)) s; Hearth's log: $work/hearth.log"
exit $status
