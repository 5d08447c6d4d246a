#!/usr/bin/env bash
# The HR joiner flow on one machine:
#
#   HR system --employee.hired--> hr_receiver.py --POST /api/v1/identities--> idsync-dispatcher
#   idsync-dispatcher --identity.created (signed)--> webhook_receiver.py --> events.jsonl
#
# Starts a dispatcher on a fresh store in a temporary directory, registers a
# webhook, starts both receivers, sends one hire twice (an HR retry), and
# checks that idsync holds exactly one new identity and that exactly one
# verified identity.created arrived. Exits non-zero when a check fails.
#
# Binaries: IDSYNC_DISPATCHER (default: build/dispatcher/idsync-dispatcher).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
dispatcher=${IDSYNC_DISPATCHER:-$root/build/dispatcher/idsync-dispatcher}
if [ ! -x "$dispatcher" ]; then
  echo "run.sh: no dispatcher at $dispatcher: run ./scripts/build, or set IDSYNC_DISPATCHER" >&2
  exit 2
fi
for tool in curl python3; do
  command -v $tool >/dev/null || { echo "run.sh: $tool not found: run ./scripts/setup" >&2; exit 2; }
done

started=$(date +%s.%N)
work=$(mktemp -d "${TMPDIR:-/tmp}/idsync-hr-joiner.XXXXXX")
pids=()
cleanup() {
  local status=$?
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "$status" -ne 0 ]; then
    echo "== FAILED (exit $status). Last lines of the dispatcher's log:" >&2
    tail -n 20 "$work/dispatcher.log" >&2 || true
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
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# json EXPR: evaluates a Python expression over the JSON document on stdin (d).
json() { python3 -c 'import json, sys; d = json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"; }
api() {  # api METHOD PATH [BODY]
  curl -sS --fail-with-body -X "$1" "http://127.0.0.1:$http_port$2" \
    -H "Authorization: Bearer $token" ${3:+-d "$3"}
}
wait_for_port_file() {  # wait_for_port_file FILE PID
  for _ in $(seq 100); do
    [ -s "$1" ] && { cat "$1"; return 0; }
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

echo "== 1. A dispatcher on a fresh store ($work/idsync.db)"
token=$("$dispatcher" bootstrap --tenant acme --db "$work/idsync.db" 2>/dev/null)
for attempt in 1 2 3; do  # free ports can be taken in between: try others
  http_port=$(free_port)
  grpc_port=$(free_port)
  # --allow-private-callbacks: the webhook receiver is on loopback.
  "$dispatcher" --db "$work/idsync.db" --http-listen "127.0.0.1:$http_port" --metrics-listen "" \
    --grpc-listen "127.0.0.1:$grpc_port" --allow-private-callbacks \
    >>"$work/dispatcher.log" 2>&1 &
  dispatcher_pid=$!
  pids+=("$dispatcher_pid")
  for _ in $(seq 100); do
    kill -0 "$dispatcher_pid" 2>/dev/null || break
    curl -sf "http://127.0.0.1:$http_port/health" >/dev/null 2>&1 && break 2
    sleep 0.1
  done
  kill "$dispatcher_pid" 2>/dev/null || true
  [ "$attempt" -lt 3 ] || fail "the dispatcher did not start (see its log)"
done
echo "REST API on http://127.0.0.1:$http_port"

echo
echo "== 2. The webhook receiver, and a webhook for identity.created pointing at it"
"python3" "$here/webhook_receiver.py" --port 0 --port-file "$work/webhook.port" \
  --secret-file "$work/webhook.secret" --events "$work/events.jsonl" &
pids+=($!)
webhook_port=$(wait_for_port_file "$work/webhook.port" $!) || fail "webhook_receiver.py did not start"
webhook=$(api POST /api/v1/webhooks \
  "{\"url\": \"http://127.0.0.1:$webhook_port/idsync\", \"event_types\": [\"identity.created\"]}")
webhook_id=$(echo "$webhook" | json 'd["webhook"]["id"]')
# The signing secret is shown only in this answer: keep it where only the
# receiver reads it.
(umask 077 && echo "$webhook" | json 'd["secret"]' >"$work/webhook.secret")
echo "webhook $webhook_id -> http://127.0.0.1:$webhook_port/idsync (secret saved to webhook.secret)"

echo
echo "== 3. The HR receiver, in front of POST /api/v1/identities"
IDSYNC_URL="http://127.0.0.1:$http_port" IDSYNC_TOKEN="$token" \
  python3 "$here/hr_receiver.py" --port 0 --port-file "$work/hr.port" &
pids+=($!)
hr_port=$(wait_for_port_file "$work/hr.port" $!) || fail "hr_receiver.py did not start"

echo
echo "== 4. The HR system sends a hire, then the same event again"
python3 "$here/send_hire.py" --url "http://127.0.0.1:$hr_port/" --times 2 ||
  fail "the HR receiver did not accept the hire"

echo
echo "== 5. Checks"
identities=$(api GET '/api/v1/identities?source=api')
count=$(echo "$identities" | json 'd["total"]')
[ "$count" = 1 ] || fail "expected 1 identity from the API source, found $count"
ok "exactly one identity: $(echo "$identities" | json \
  '"id {id}: {external_id} {display_name} <{email}>, {department}".format(**d["items"][0])')"
[ "$(echo "$identities" | json 'd["items"][0]["external_id"]')" = E4711 ] ||
  fail "the identity is not E4711"

# Wait until the dispatcher has delivered every event it has for the webhook
# (the receiver writes an event before it answers 2xx).
for _ in $(seq 100); do
  deliveries=$(api GET "/api/v1/webhooks/$webhook_id/deliveries")
  echo "$deliveries" | json 'd["total"] > 0 and all(i["state"] == "delivered" for i in d["items"])' |
    grep -q True && break
  sleep 0.1
done
echo "$deliveries" | json 'd["total"] > 0 and all(i["state"] == "delivered" for i in d["items"])' |
  grep -q True || fail "webhook deliveries not all delivered: $deliveries"
[ "$(echo "$deliveries" | json 'd["total"]')" = 1 ] ||
  fail "expected 1 webhook delivery, got: $deliveries"
ok "the dispatcher delivered one event: $(echo "$deliveries" | json \
  '"{event_id} {event_type}, {state} at the 1st attempt (HTTP {last_status})".format(**d["items"][0]) if d["items"][0]["attempts"] == 1 else d["items"][0]')"

received=$(python3 - "$work/events.jsonl" <<'EOF'
import json, sys
events = [json.loads(line) for line in open(sys.argv[1])]
created = [e for e in events if e["type"] == "identity.created" and e["verified"]]
ids = [i["external_id"] for e in created for i in e["data"]["items"]]
print(len(created), ",".join(ids))
EOF
) || fail "no events file from webhook_receiver.py"
[ "$received" = "1 E4711" ] ||
  fail "expected one verified identity.created for E4711, got: $received"
ok "exactly one verified identity.created arrived at the receiver (E4711)"

# A forged delivery (signed with another key) is refused and not recorded.
forged_status=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$webhook_port/idsync" \
  -H "webhook-id: msg_forged" -H "webhook-timestamp: $(date +%s)" \
  -H "webhook-signature: v1,$(printf 'not the secret' | base64)" \
  -d '{"type": "identity.created", "data": {"items": [{"external_id": "E666"}]}}')
[ "$forged_status" = 401 ] || fail "a forged webhook was answered $forged_status, not 401"
[ "$(wc -l <"$work/events.jsonl")" -eq 1 ] || fail "the forged webhook was recorded"
ok "a forged webhook is refused (401) and not recorded"

echo
echo "== Done in $(python3 -c "import time; print(round(time.time() - $started, 1))") s"
