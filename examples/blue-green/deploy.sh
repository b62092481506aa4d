#!/usr/bin/env bash
# A blue-green swap behind nginx: start the idle colour, check it, point nginx at it, let the
# old colour drain. Any failed step rolls back and leaves the old colour serving; the exit
# code says whether the swap happened.
#
# Settings (environment):
#   CONFIG          mcpd config defining the apps `blue` and `green` (default: mcpd.toml here)
#   UPSTREAM        the nginx include that names the live colour (default /etc/nginx/mcpd/upstream.conf)
#   NGINX_CMD       how to call nginx (default: nginx); e.g. "nginx -c /path/nginx.conf"
#                   (not NGINX: nginx itself reads NGINX as the sockets of a binary upgrade)
#   NGINX_URL       nginx's base URL for the colour check (default http://127.0.0.1:8080)
#   EXPECT_HASH     if set, the new colour's tools_hash must equal it (`mcpd probe --expect-hash`)
#   READY_TIMEOUT   how long the new colour may take to get ready (default 30s)
#   SWITCH_TIMEOUT  how long nginx may take to serve the new colour, and its old workers to
#                   finish their requests, before the old colour is stopped (default 60s)
#   NGINX_PID       nginx's pid file (default: the `pid` of `nginx -T`, else /run/nginx.pid)
#   MCPD            the mcpd binary (default: mcpd)
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
CONFIG=${CONFIG:-$here/mcpd.toml}
UPSTREAM=${UPSTREAM:-/etc/nginx/mcpd/upstream.conf}
if [ -n "${NGINX:-}" ]; then
    echo "deploy: ignoring NGINX (nginx reads it as inherited sockets); set NGINX_CMD to say how to call nginx" >&2
fi
unset NGINX
NGINX_CMD=${NGINX_CMD:-nginx}
NGINX_URL=${NGINX_URL:-http://127.0.0.1:8080}
READY_TIMEOUT=${READY_TIMEOUT:-30s}
SWITCH_TIMEOUT=${SWITCH_TIMEOUT:-60s}
MCPD=${MCPD:-mcpd}

say() { echo "deploy: $*" >&2; }

port_of() { # the port of colour $1 in CONFIG: the first listen address of its app
  awk -v app="[apps.$1]" '$0 == app { f = 1; next } /^\[/ { f = 0 }
    f && /^listen/ { if (match($0, /:[0-9]+"/)) { print substr($0, RSTART + 1, RLENGTH - 2); exit } }' "$CONFIG"
}

live=$(awk -F'"' '/default/ { print $2 }' "$UPSTREAM")
case "$live" in
  blue) next=green ;;
  green) next=blue ;;
  *) say "cannot tell the live colour from $UPSTREAM"; exit 2 ;;
esac
port=$(port_of "$next")
[ -n "$port" ] || { say "$CONFIG gives no listen port for $next"; exit 2; }
say "live: $live; deploying $next on port $port"

rollback() {
  say "$1; rolling back: $live keeps serving"
  if [ -n "${saved:-}" ]; then
    cp "$saved" "$UPSTREAM" && $NGINX_CMD -t -q && $NGINX_CMD -s reload || say "cannot restore $UPSTREAM: check nginx now"
  fi
  "$MCPD" stop "$next" >/dev/null 2>&1
  exit 1
}

# 1. Start the idle colour with the new release; `--wait` fails if it never gets ready.
"$MCPD" start --wait "$CONFIG" "$next" || rollback "$next did not become ready"
"$MCPD" wait "$next" --ready --timeout "$READY_TIMEOUT" >/dev/null || rollback "$next is not ready"

# 2. Check it speaks MCP and, if asked, serves the expected tools.
"$MCPD" probe "$next" ${EXPECT_HASH:+--expect-hash "$EXPECT_HASH"} >/dev/null \
  || rollback "$next failed its MCP probe"

# 3. Point nginx at it: a new include, checked by nginx -t before the reload.
saved=$(mktemp)
cp "$UPSTREAM" "$saved"
cat > "$UPSTREAM.new" <<CONF
# Written by deploy.sh: the live colour.
upstream mcp_live {
    server 127.0.0.1:$port;
    keepalive 16;
}
map "" \$mcp_colour {
    default "$next";
}
CONF
mv "$UPSTREAM.new" "$UPSTREAM"
$NGINX_CMD -t -q || rollback "nginx -t refused the new upstream"
# The workers running now route to the old colour: note them before the reload.
pid_file=${NGINX_PID:-$($NGINX_CMD -T 2>/dev/null | awk '$1 == "pid" { gsub(";", "", $2); print $2; exit }')}
master=$(cat "${pid_file:-/run/nginx.pid}" 2>/dev/null)
old_workers=$(ps -o pid= --ppid "${master:-0}" 2>/dev/null)
[ -n "$old_workers" ] || rollback "cannot find nginx's workers (master pid ${master:-unknown}; set NGINX_PID)"
$NGINX_CMD -s reload || rollback "nginx -s reload failed"

# 4. Wait until nginx serves the new colour and every old worker is gone (they finish the
#    requests they hold, which still go to the old colour).
deadline=$(( $(date +%s) + ${SWITCH_TIMEOUT%s} ))
old_alive() {
  local pid
  for pid in $old_workers; do kill -0 "$pid" 2>/dev/null && return 0; done
  return 1
}
until [ "$(curl -fsS "$NGINX_URL/mcpd-colour" 2>/dev/null)" = "$next" ]; do
  [ "$(date +%s)" -lt "$deadline" ] || rollback "nginx did not switch to $next within $SWITCH_TIMEOUT"
  sleep 0.1
done
# Old workers holding long streams may outlive SWITCH_TIMEOUT: the old colour's drain
# (kill_timeout) then ends them.
while old_alive; do
  if [ "$(date +%s)" -ge "$deadline" ]; then
    say "warning: old nginx workers still hold requests after $SWITCH_TIMEOUT; $live drains them"
    break
  fi
  sleep 0.1
done
rm -f "$saved"
saved=

# 5. The old colour drains: `mcpd stop` returns once it has exited (kill_timeout at most).
"$MCPD" stop "$live" >/dev/null || say "warning: stopping $live failed; see mcpd describe $live"
say "$next is live"
