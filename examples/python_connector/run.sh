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
# Debian's python3, which has python3-grpcio and python3-protobuf (a python3
# from pyenv or a venv may not).
PYTHON="${PYTHON:-/usr/bin/python3}"
PEOPLE="${PEOPLE:-2500}"

work="$(mktemp -d)"
connector_pid=""
cleanup() {
  if [ -n "$connector_pid" ]; then kill "$connector_pid" 2>/dev/null || true; fi
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

echo "OK: $PEOPLE people synced from Python; the change and the removal arrived"
