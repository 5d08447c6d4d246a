#!/usr/bin/env bash
# An HR export that only an on-prem agent can read, synced by a dispatcher
# that never learns where it is:
#
#   agent host: employees.csv + agent-config.json --> idsync-agent
#   idsync-agent --dials out, gRPC--> idsync-dispatcher <--REST-- you (curl)
#
# Runs everything on this machine in a temporary directory: a dispatcher, a
# registration token from the API, `idsync-agent register`, an agent-mode
# connector bound to the agent, `idsync-agent run`, a sync started through
# the API; then restarts the dispatcher and checks that the agent comes back
# by itself and that a second sync (the next day's export) succeeds.
# Exits non-zero when a check fails.
#
# Binaries: IDSYNC_DISPATCHER, IDSYNC_AGENT, IDSYNC_CLI (default: the ones in
# build/).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
dispatcher=${IDSYNC_DISPATCHER:-$root/build/dispatcher/idsync-dispatcher}
agent=${IDSYNC_AGENT:-$root/build/agents/idsync-agent}
idsync=${IDSYNC_CLI:-$root/build/cli/idsync}
for bin in "$dispatcher" "$agent" "$idsync"; do
  if [ ! -x "$bin" ]; then
    echo "run.sh: no $bin: run ./scripts/build, or set IDSYNC_DISPATCHER, IDSYNC_AGENT, IDSYNC_CLI" >&2
    exit 2
  fi
done
for tool in curl python3; do
  command -v $tool >/dev/null || { echo "run.sh: $tool not found: run ./scripts/setup" >&2; exit 2; }
done

started=$(date +%s.%N)
work=$(mktemp -d "${TMPDIR:-/tmp}/idsync-onprem-agent.XXXXXX")
site="$work/agent-host"      # what lives on the agent's machine only
central="$work/dispatcher"   # what lives with the dispatcher
mkdir -p "$site/hr-share" "$central"
dispatcher_pid=""
agent_pid=""
cleanup() {
  local status=$?
  for pid in $agent_pid $dispatcher_pid; do kill "$pid" 2>/dev/null || true; done
  for pid in $agent_pid $dispatcher_pid; do wait "$pid" 2>/dev/null || true; done
  if [ "$status" -ne 0 ]; then
    echo "== FAILED (exit $status). Last lines of the logs:" >&2
    for log in "$central/dispatcher.log" "$site/agent.log"; do
      echo "-- $log" >&2
      tail -n 15 "$log" >&2 || true
    done
    echo "(everything is kept in $work)" >&2
  else
    rm -rf "$work"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }
elapsed() { python3 -c "import time; print(round(time.time() - $1, 1))"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# json EXPR: evaluates a Python expression over the JSON document on stdin (d).
json() { python3 -c 'import json, sys; d = json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"; }
api() {  # api METHOD PATH [BODY]
  curl -sS --fail-with-body -X "$1" "http://127.0.0.1:$http_port$2" \
    -H "Authorization: Bearer $token" ${3:+-d "$3"}
}
start_dispatcher() {  # returns 1 when it exits or does not answer in 10 s
  "$dispatcher" --db "$central/idsync.db" --http-listen "127.0.0.1:$http_port" --metrics-listen "" \
    --grpc-listen "127.0.0.1:$grpc_port" >>"$central/dispatcher.log" 2>&1 &
  dispatcher_pid=$!
  for _ in $(seq 100); do
    kill -0 "$dispatcher_pid" 2>/dev/null || return 1
    curl -sf "http://127.0.0.1:$http_port/health" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  return 1
}
agent_online() {
  api GET /api/v1/agents | json 'any(a["name"] == "branch-office" and a["online"] for a in d["items"])'
}
wait_for_agent() {  # wait_for_agent SECONDS
  for _ in $(seq $(($1 * 10))); do
    [ "$(agent_online)" = True ] && return 0
    sleep 0.1
  done
  return 1
}
sync_and_wait() {  # starts a full sync of connector $connector_id; prints the finished run
  local run_id
  run_id=$(api POST "/api/v1/connectors/$connector_id/sync" '{}' | json 'd["id"]')
  for _ in $(seq 600); do
    run=$(api GET "/api/v1/sync-runs/$run_id")
    case $(echo "$run" | json 'd["status"]') in
      succeeded | failed | cancelled) echo "$run"; return 0 ;;
    esac
    sleep 0.1
  done
  fail "sync run $run_id did not finish in 60 s: $run"
}
rows() { echo $(($(wc -l <"$1") - 1)); }  # gen-hr writes one line per employee

echo "== 1. On the agent host: an HR export on a share only the agent can read"
"$idsync" gen-hr --count 2000 --seed 7 --out "$site/hr-share/employees.csv" 2>&1

echo
echo "== 2. The dispatcher, on a fresh store"
token=$("$dispatcher" bootstrap --tenant acme --db "$central/idsync.db" 2>/dev/null)
for attempt in 1 2 3; do  # free ports can be taken in between: try others
  http_port=$(free_port)
  grpc_port=$(free_port)
  start_dispatcher && break
  kill "$dispatcher_pid" 2>/dev/null || true
  [ "$attempt" -lt 3 ] || fail "the dispatcher did not start (see its log)"
done
echo "REST on 127.0.0.1:$http_port, gRPC (agents dial this) on 127.0.0.1:$grpc_port"

echo
echo "== 3. An admin creates a one-time registration token through the API"
registration=$(api POST /api/v1/agents/registration-tokens '{"name": "branch-office"}' |
  json 'd["token"]')
echo "${registration:0:14}... (shown once)"

echo
echo "== 4. On the agent host: its config (the CSV's path lives only here), then register"
# Plaintext gRPC on loopback is for development only: see docs/agent.md, TLS.
cat >"$site/agent-config.json" <<EOF
{
  "dispatcher": "127.0.0.1:$grpc_port",
  "token_file": "$site/state/agent.token",
  "tls": {"insecure": true},
  "local_connectors_only": true,
  "connectors": {
    "branch-hr": {"type": "csv", "config": {"path": "$site/hr-share/employees.csv"}}
  }
}
EOF
cat "$site/agent-config.json"
# The registration token goes in on stdin, so it stays out of `ps`.
echo "$registration" | "$agent" register --config "$site/agent-config.json" \
  --registration-token - 2>>"$site/agent.log"

echo
echo "== 5. On the agent host: idsync-agent run (dials out, reconnects forever)"
"$agent" run --config "$site/agent-config.json" 2>>"$site/agent.log" &
agent_pid=$!
wait_for_agent 15 || fail "the agent did not come online"
ok "agent branch-office online: $(api GET /api/v1/agents | json \
  '"version {version}, connector types {connector_types}".format(**d["items"][0])')"

echo
echo "== 6. A connector in agent mode, bound to the agent: the dispatcher gets no path"
connector=$(api POST /api/v1/connectors \
  '{"business_id": "branch-hr", "type": "csv", "mode": "agent", "agent": "branch-office", "config": {}}')
connector_id=$(echo "$connector" | json 'd["id"]')
echo "$connector" | json '"connector {id} {business_id}: type {type}, mode {mode}, agent {agent}, config {config}".format(**d)'

echo
echo "== 7. Sync through the agent"
run=$(sync_and_wait)
echo "$run" | json '"run {id}: {status}, processed {processed}, created {created}".format(**d) + (" error: " + d["error"] if d["error"] else "")'
[ "$(echo "$run" | json 'd["status"]')" = succeeded ] || fail "the first sync did not succeed"
expected=$(rows "$site/hr-share/employees.csv")
[ "$(echo "$run" | json 'd["created"]')" = "$expected" ] || fail "expected $expected created"
count=$(api GET '/api/v1/identities?source=branch-hr&limit=1' | json 'd["total"]')
[ "$count" = "$expected" ] || fail "expected $expected identities, the API has $count"
ok "the API has $count identities from branch-hr"

echo
echo "== 8. Restart the dispatcher (SIGTERM, then the same ports and store)"
restart_started=$(date +%s.%N)
kill -TERM "$dispatcher_pid"
wait "$dispatcher_pid" || true
echo "stopped in $(elapsed "$restart_started") s"
start_dispatcher || fail "the dispatcher did not start again on the same ports (see its log)"
wait_for_agent 30 || fail "the agent did not reconnect within 30 s"
ok "the agent reconnected by itself, $(elapsed "$restart_started") s after the stop began"
grep -E 'disconnected|reconnecting|connected to' "$site/agent.log" | tail -n 4 | sed 's/^/   agent.log: /'

echo
echo "== 9. The next day's export (2% changed, 1% left) on the share, and a second sync"
"$idsync" gen-hr --count 2000 --seed 7 --modify-percent 2 --remove-percent 1 \
  --out "$site/hr-share/employees.csv.new" 2>&1
mv "$site/hr-share/employees.csv.new" "$site/hr-share/employees.csv"
run=$(sync_and_wait)
echo "$run" | json '"run {id}: {status}, processed {processed}, created {created}, updated {updated}, unchanged {unchanged}, deleted {deleted}".format(**d) + (" error: " + d["error"] if d["error"] else "")'
[ "$(echo "$run" | json 'd["status"]')" = succeeded ] || fail "the second sync did not succeed"
[ "$(echo "$run" | json 'd["updated"] > 0 and d["deleted"] > 0')" = True ] ||
  fail "expected updates and deletions in the second sync"
expected=$(rows "$site/hr-share/employees.csv")
count=$(api GET '/api/v1/identities?source=branch-hr&limit=1' | json 'd["total"]')
[ "$count" = "$expected" ] || fail "expected $expected active identities, the API has $count"
ok "the API has $count active identities from branch-hr"

echo
echo "== 10. idsync-agent status, on the agent host"
"$agent" status --config "$site/agent-config.json" || fail "idsync-agent status says not connected"

echo
echo "== Done in $(elapsed "$started") s"
