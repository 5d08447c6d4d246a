#!/usr/bin/env bash
# Agent mode vs hosted, same file, same session (issue 5's figures):
#
#   bench/agent.sh [COUNT] [RUNS]      (default 1000000 3)
#
# Each run syncs the same generated HR CSV into a fresh store through a
# fresh idsync-dispatcher: once with a hosted csv connector, once with an
# agent-mode connector run by a local idsync-agent over loopback gRPC. Prints
# the run durations (the store's started_at -> finished_at) and the peak RSS
# of each process (/usr/bin/time -v). Needs scripts/build.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-1000000}
runs=${2:-3}
work=$(mktemp -d /tmp/idsync-bench-agent.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
dispatcher=$PWD/build/dispatcher/idsync-dispatcher
agent=$PWD/build/agents/idsync-agent
build/cli/idsync gen-hr --count "$count" --seed 7 --out "$work/hr.csv" >/dev/null
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss_kb() { grep 'Maximum resident' "$1" | awk '{print $NF}'; }

# One run: $1 = hosted|agent. Prints "seconds dispatcher_rss_kb agent_rss_kb".
one() {
  local mode=$1 dir="$work/$1-$RANDOM"
  mkdir -p "$dir"
  local http grpc token
  http=$(free_port); grpc=$(free_port)
  token=$($dispatcher bootstrap --tenant bench --db "$dir/d.db" 2>/dev/null)
  /usr/bin/time -v -o "$dir/dispatcher.time" $dispatcher serve --db "$dir/d.db" \
    --http-listen "127.0.0.1:$http" --metrics-listen "" --grpc-listen "127.0.0.1:$grpc" \
    --rate-limit 100000 --rate-burst 100000 >"$dir/dispatcher.log" 2>&1 &
  local dpid=$!
  api() { curl -sf -X "$1" "http://127.0.0.1:$http$2" -H "Authorization: Bearer $token" ${3:+-d "$3"}; }
  for _ in $(seq 100); do api GET /health >/dev/null 2>&1 && break; sleep 0.1; done
  local apid="" body
  if [ "$mode" = agent ]; then
    local reg
    reg=$(api POST /api/v1/agents/registration-tokens '{"name": "bench"}' |
      grep -o '"token":"[^"]*"' | cut -d'"' -f4)
    $agent register --dispatcher "127.0.0.1:$grpc" --registration-token "$reg" \
      --token-file "$dir/agent.token" --insecure >/dev/null 2>&1
    printf '{"connectors": {"hr": {"type": "csv", "config": {"path": "%s"}}}}\n' \
      "$work/hr.csv" >"$dir/agent-config.json"
    /usr/bin/time -v -o "$dir/agent.time" $agent run --dispatcher "127.0.0.1:$grpc" \
      --token-file "$dir/agent.token" --config "$dir/agent-config.json" \
      --insecure 2>"$dir/agent.log" &
    apid=$!
    for _ in $(seq 100); do api GET /api/v1/agents | grep -q '"online":true' && break; sleep 0.1; done
    body='{"business_id": "hr", "type": "csv", "mode": "agent", "agent": "bench", "config": {}}'
  else
    body="{\"business_id\": \"hr\", \"type\": \"csv\", \"config\": {\"path\": \"$work/hr.csv\"}}"
  fi
  api POST /api/v1/connectors "$body" >/dev/null
  local run
  run=$(api POST /api/v1/connectors/1/sync '{}' | grep -o '"id":[0-9]*' | head -1 | cut -d: -f2)
  while api GET "/api/v1/sync-runs/$run" | grep -q '"status":"running"'; do sleep 0.05; done
  local state seconds
  state=$(api GET "/api/v1/sync-runs/$run")
  echo "$state" | grep -q '"status":"succeeded"' || { echo "run failed: $state" >&2; exit 1; }
  seconds=$(python3 -c 'import json,sys,datetime as d
r=json.loads(sys.argv[1]); p=lambda s: d.datetime.fromisoformat(s.replace("Z","+00:00"))
print(round((p(r["finished_at"])-p(r["started_at"])).total_seconds(),3))' "$state")
  # SIGTERM the programs, not /usr/bin/time (which would not pass it on).
  if [ -n "$apid" ]; then kill -TERM "$(pgrep -P "$apid")"; wait "$apid" || true; fi
  kill -TERM "$(pgrep -P "$dpid")"; wait "$dpid" || true
  echo "$seconds $(rss_kb "$dir/dispatcher.time") $([ -n "$apid" ] && rss_kb "$dir/agent.time" || echo -)"
}

echo "| run | hosted s | agent s | hosted dispatcher RSS | agent-mode dispatcher RSS | agent RSS |"
echo "|---|---|---|---|---|---|"
for i in $(seq "$runs"); do
  read -r hs hd _ < <(one hosted)
  read -r as ad ar < <(one agent)
  echo "| $i | $hs | $as | $((hd / 1024)) MB | $((ad / 1024)) MB | $((ar / 1024)) MB |"
done
echo "($count identities; records/s = $count / seconds)"
