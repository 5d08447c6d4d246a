#!/usr/bin/env bash
# Syncs people from a connector written in Python into an idsync store:
# generates the Python gRPC code from the project's .proto, starts
# connector.py on a free loopback port, runs `idsync sync --type remote`
# twice (a first sync, then one person changed and one removed) and checks
# what landed. Exits non-zero on any failed check.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
IDSYNC="${IDSYNC_CLI:-$root/build/cli/idsync}"
DISPATCHER="${IDSYNC_DISPATCHER:-$root/build/dispatcher/idsync-dispatcher}"
AGENT="${IDSYNC_AGENT:-$root/build/agents/idsync-agent}"
# Debian's python3, which has python3-grpcio and python3-protobuf (a python3
# from pyenv or a venv may not).
PYTHON="${PYTHON:-/usr/bin/python3}"
PEOPLE="${PEOPLE:-2500}"

work="$(mktemp -d)"
connector_pid=""
dispatcher_pid=""
agent_pid=""
cleanup() {
  local status=$?
  for pid in $agent_pid $dispatcher_pid $connector_pid; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [ "$status" -ne 0 ]; then
    for log in "$work"/*.log; do echo "-- $log" >&2; tail -n 15 "$log" >&2; done
  fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

echo "== 1. Python code from proto/idsync/v1/connector.proto"
mkdir -p "$work/gen"
protoc -I "$root/proto" --python_out="$work/gen" --grpc_python_out="$work/gen" \
  --plugin=protoc-gen-grpc_python="$(command -v grpc_python_plugin)" \
  idsync/v1/connector.proto
ls "$work/gen/idsync/v1"

echo "== 2. people.json with $PEOPLE people"
"$PYTHON" - "$work/people.json" "$PEOPLE" <<'PY'
import json, sys
path, n = sys.argv[1], int(sys.argv[2])
people = [{"external_id": f"e{i:05d}", "email": f"person{i}@example.com",
           "first_name": "Person", "last_name": str(i),
           "department": ["Sales", "Engineering", "Finance"][i % 3],
           "status": "active"} for i in range(n)]
json.dump({"identities": people}, open(path, "w"), indent=1)
PY

echo "== 3. Start the connector"
PYTHONPATH="$work/gen" "$PYTHON" "$here/connector.py" \
  --file "$work/people.json" --listen 127.0.0.1:0 >"$work/connector.log" 2>&1 &
connector_pid=$!
address=""
for _ in $(seq 1 100); do
  address="$(sed -n 's/^python connector listening on //p' "$work/connector.log")"
  [ -n "$address" ] && break
  kill -0 "$connector_pid" 2>/dev/null || { cat "$work/connector.log"; fail "connector did not start"; }
  sleep 0.1
done
[ -n "$address" ] || fail "connector did not say where it listens"
echo "listening on $address"
printf '{"address": "%s"}\n' "$address" >"$work/remote.json"

field() { "$PYTHON" -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
sync() {
  "$IDSYNC" sync --type remote --connector people --config "$work/remote.json" \
    --db "$work/store.db" --json
}

echo "== 4. First sync"
out="$(sync)"; echo "$out"
[ "$(field "$out" status)" = succeeded ] || fail "first sync: $out"
[ "$(field "$out" created)" = "$PEOPLE" ] || fail "first sync created $(field "$out" created), want $PEOPLE"
count="$(sqlite3 "$work/store.db" "SELECT count(*) FROM identities WHERE deleted_at IS NULL")"
[ "$count" = "$PEOPLE" ] || fail "store holds $count identities, want $PEOPLE"

echo "== 5. One person changes, one leaves; sync again"
"$PYTHON" - "$work/people.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
doc["identities"][0]["department"] = "Legal"
del doc["identities"][1]
json.dump(doc, open(sys.argv[1], "w"))
PY
out="$(sync)"; echo "$out"
[ "$(field "$out" status)" = succeeded ] || fail "second sync: $out"
[ "$(field "$out" updated)" = 1 ] || fail "second sync updated $(field "$out" updated), want 1"
[ "$(field "$out" deleted)" = 1 ] || fail "second sync deleted $(field "$out" deleted), want 1"
dept="$(sqlite3 "$work/store.db" "SELECT department FROM identities WHERE external_id = 'e00000'")"
[ "$dept" = Legal ] || fail "e00000's department is '$dept', want Legal"

echo "== 6. The same connector next to an on-prem agent: the dispatcher reaches it through the agent"
free_port() { "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
http_port=$(free_port)
grpc_port=$(free_port)
token=$("$DISPATCHER" bootstrap --tenant acme --db "$work/dispatcher.db" 2>/dev/null)
"$DISPATCHER" --db "$work/dispatcher.db" --http-listen "127.0.0.1:$http_port" --metrics-listen "" \
  --grpc-listen "127.0.0.1:$grpc_port" >"$work/dispatcher.log" 2>&1 &
dispatcher_pid=$!
api() {  # api METHOD PATH [BODY]
  curl -sS --fail-with-body -X "$1" "http://127.0.0.1:$http_port$2" \
    -H "Authorization: Bearer $token" ${3:+-d "$3"}
}
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$http_port/health" >/dev/null 2>&1 && break
  sleep 0.1
done
jget() { "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
registration=$(api POST /api/v1/agents/registration-tokens '{"name": "hr-site"}' | jget token)
cat >"$work/agent.json" <<JSON
{"dispatcher": "127.0.0.1:$grpc_port", "token_file": "$work/agent.token",
 "tls": {"insecure": true},
 "connectors": {"people": {"type": "remote", "config": {"address": "$address"}}}}
JSON
echo "$registration" | "$AGENT" register --config "$work/agent.json" --registration-token - 2>>"$work/agent.log"
"$AGENT" run --config "$work/agent.json" 2>>"$work/agent.log" &
agent_pid=$!
connector_id=$(api POST /api/v1/connectors \
  '{"business_id": "people", "type": "remote", "mode": "agent", "agent": "hr-site", "config": {}}' | jget id)
online=""
for _ in $(seq 150); do
  online=$(api GET /api/v1/agents | "$PYTHON" -c 'import json,sys; print(any(a["online"] for a in json.load(sys.stdin)["items"]))')
  [ "$online" = True ] && break
  sleep 0.1
done
[ "$online" = True ] || fail "the agent did not come online"
run_id=$(api POST "/api/v1/connectors/$connector_id/sync" '{}' | jget id)
status=""
for _ in $(seq 300); do
  run=$(api GET "/api/v1/sync-runs/$run_id")
  status=$(field "$run" status)
  [ "$status" = running ] || break
  sleep 0.1
done
echo "$run"
[ "$status" = succeeded ] || fail "the sync through the agent: $run"
[ "$(field "$run" created)" = "$((PEOPLE - 1))" ] || fail "created $(field "$run" created) through the agent, want $((PEOPLE - 1))"

echo "OK: $PEOPLE people synced from Python, hosted and through an agent; the change and the removal arrived"
