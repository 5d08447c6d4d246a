#!/usr/bin/env bash
# A directory synced on a schedule, and a change in it arriving by itself:
#
#   slapd (directory.ldif) <--ldap, every minute + nightly full-- idsync-dispatcher
#   idsync-dispatcher --identity.updated (signed)--> ../hr_joiner/webhook_receiver.py
#
# Runs everything on this machine in a temporary directory: a private slapd
# holding 20 people and 2 groups, a dispatcher on a fresh store, a webhook for
# identity.*, and an ldap connector created through the API with a schedule
# (an incremental sync every minute, a full one at 02:00 Berlin time). A first
# full sync runs at once; then one person's title and department change in
# the directory, and the script waits for the scheduler's incremental run
# (about a minute after the connector was created) to bring the change into
# the store and to the webhook receiver. Exits non-zero when a check fails.
#
# Needs slapd and ldap-utils (scripts/setup). Binaries: IDSYNC_DISPATCHER
# (default: build/dispatcher/idsync-dispatcher).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
dispatcher=${IDSYNC_DISPATCHER:-$root/build/dispatcher/idsync-dispatcher}
slapd=${SLAPD:-/usr/sbin/slapd}
if [ ! -x "$dispatcher" ]; then
  echo "run.sh: no dispatcher at $dispatcher: run ./scripts/build, or set IDSYNC_DISPATCHER" >&2
  exit 2
fi
for tool in curl python3 "$slapd" slappasswd ldapadd ldapmodify ldapsearch; do
  command -v "$tool" >/dev/null ||
    { echo "run.sh: $tool not found: run ./scripts/setup (it installs slapd and ldap-utils)" >&2; exit 2; }
done

started=$(date +%s.%N)
work=$(mktemp -d "${TMPDIR:-/tmp}/idsync-scheduled-sync.XXXXXX")
pids=()
cleanup() {
  local status=$?
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "$status" -ne 0 ]; then
    echo "== FAILED (exit $status). Last lines of the logs:" >&2
    for log in "$work/dispatcher.log" "$work/slapd.log"; do
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
# Dicts and lists are printed as JSON, so they can be fed to json again.
json() {
  python3 -c 'import json, sys; d = json.load(sys.stdin); r = eval(sys.argv[1])
print(json.dumps(r) if isinstance(r, (dict, list)) else r)' "$1"
}
api() {  # api METHOD PATH [BODY, or @FILE]
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
wait_for_run() {  # wait_for_run RUN_ID: prints the run once it has finished
  local run
  for _ in $(seq 300); do
    run=$(api GET "/api/v1/sync-runs/$1")
    case $(echo "$run" | json 'd["status"]') in
      succeeded | failed | cancelled) echo "$run"; return 0 ;;
    esac
    sleep 0.1
  done
  fail "sync run $1 did not finish in 30 s: $run"
}
show_run() {
  json '"run {id} ({kind}): {status}, processed {processed}, created {created}, updated {updated}, unchanged {unchanged}, deleted {deleted}".format(kind="incremental" if d["incremental"] else "full", **d) + (" error: " + d["error"] if d["error"] else "")'
}
# show_schedule CONNECTOR_JSON: the schedule and its next run times, the
# full one also in the schedule's time zone.
show_schedule() {
  python3 -c '
import datetime, json, sys, zoneinfo
s = json.loads(sys.argv[1])["schedule"]
zone = zoneinfo.ZoneInfo(s["time_zone"])
full = datetime.datetime.fromisoformat(s["next_full_at"].replace("Z", "+00:00"))
print("schedule: incremental every %d min, full \"%s\" in %s"
      % (s["incremental_every_minutes"], s["full_cron"], s["time_zone"]))
print("  next_incremental_at:", s["next_incremental_at"])
print("  next_full_at:       ", s["next_full_at"],
      full.astimezone(zone).strftime("(%Y-%m-%d %H:%M %Z in ") + s["time_zone"] + ")")
' "$1"
}

# The directory: an admin (slapd's rootdn, for loading and changing entries)
# and the account idsync binds as, each with a random password kept in a
# file (0600), so that no password is on a command line.
base_dn="dc=example,dc=com"
admin_dn="cn=admin,$base_dn"
sync_dn="cn=idsync,ou=services,$base_dn"
(umask 077
 python3 -c 'import secrets; print(secrets.token_urlsafe(18), end="")' >"$work/admin.pw"
 python3 -c 'import secrets; print(secrets.token_urlsafe(18), end="")' >"$work/idsync.pw")

echo "== 1. A private slapd with 20 people and 2 groups (directory.ldif)"
mkdir "$work/slapd-db"
cat >"$work/slapd.conf" <<EOF
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/nis.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile $work/slapd.pid
sizelimit unlimited
database mdb
maxsize 104857600
suffix "$base_dn"
rootdn "$admin_dn"
rootpw $(slappasswd -T "$work/admin.pw")
directory $work/slapd-db
index objectClass eq
index uid eq
# Incremental syncs search on modifyTimestamp (docs/connectors/ldap.md).
index modifyTimestamp eq
access to attrs=userPassword by self write by anonymous auth by * none
access to dn.base="" by * read
access to * by users read by * none
EOF
for attempt in 1 2 3; do  # free ports can be taken in between: try others
  ldap_url="ldap://127.0.0.1:$(free_port)"
  "$slapd" -d 0 -f "$work/slapd.conf" -h "$ldap_url/" 2>>"$work/slapd.log" &
  slapd_pid=$!
  pids+=("$slapd_pid")
  for _ in $(seq 100); do
    kill -0 "$slapd_pid" 2>/dev/null || break
    ldapsearch -x -H "$ldap_url" -b '' -s base >/dev/null 2>&1 && break 2
    sleep 0.1
  done
  kill "$slapd_pid" 2>/dev/null || true
  [ "$attempt" -lt 3 ] || fail "slapd did not start (see its log)"
done
ldapadd -x -H "$ldap_url" -D "$admin_dn" -y "$work/admin.pw" >/dev/null <<EOF
dn: $base_dn
objectClass: dcObject
objectClass: organization
o: Example Corp
dc: example

dn: ou=services,$base_dn
objectClass: organizationalUnit
ou: services

dn: $sync_dn
objectClass: applicationProcess
objectClass: simpleSecurityObject
cn: idsync
description: idsync's read-only sync account
userPassword: $(slappasswd -T "$work/idsync.pw")
EOF
ldapadd -x -H "$ldap_url" -D "$admin_dn" -y "$work/admin.pw" -f "$here/directory.ldif" >/dev/null
count() {  # count BASE FILTER: entries idsync's account sees
  ldapsearch -x -LLL -H "$ldap_url" -D "$sync_dn" -y "$work/idsync.pw" -b "$1" "$2" dn |
    grep -c '^dn:'
}
echo "slapd on $ldap_url: $(count "ou=people,$base_dn" '(objectClass=inetOrgPerson)') people," \
  "$(count "ou=groups,$base_dn" '(objectClass=groupOfNames)') groups; idsync binds as $sync_dn"

echo
echo "== 2. A dispatcher on a fresh store"
token=$("$dispatcher" bootstrap --tenant acme --db "$work/idsync.db" 2>/dev/null)
for attempt in 1 2 3; do
  http_port=$(free_port)
  grpc_port=$(free_port)
  # --allow-private-callbacks: the webhook receiver is on loopback.
  # --tenant-source-cidrs: tenant acme's directory is on loopback too (a
  # tenant's sources must otherwise be public addresses).
  "$dispatcher" --db "$work/idsync.db" --http-listen "127.0.0.1:$http_port" --metrics-listen "" \
    --grpc-listen "127.0.0.1:$grpc_port" --allow-private-callbacks \
    --tenant-source-cidrs acme=127.0.0.1/32 \
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
echo "== 3. The webhook receiver (examples/hr_joiner's), and a webhook for identity.*"
python3 "$here/../hr_joiner/webhook_receiver.py" --port 0 --port-file "$work/webhook.port" \
  --secret-file "$work/webhook.secret" --events "$work/events.jsonl" &
pids+=($!)
webhook_port=$(wait_for_port_file "$work/webhook.port" $!) || fail "webhook_receiver.py did not start"
webhook=$(api POST /api/v1/webhooks \
  "{\"url\": \"http://127.0.0.1:$webhook_port/idsync\", \"event_types\": [\"identity.*\"]}")
webhook_id=$(echo "$webhook" | json 'd["webhook"]["id"]')
# The signing secret is shown only in this answer.
(umask 077 && echo "$webhook" | json 'd["secret"]' >"$work/webhook.secret")
echo "webhook $webhook_id (identity.*) -> http://127.0.0.1:$webhook_port/idsync"

echo
echo "== 4. An ldap connector with a schedule: incremental every minute, full nightly"
# The bind password goes in auth_config: sealed in the store, never shown
# again. The request is read from a file so it stays off the command line.
(umask 077 && cat >"$work/connector.json" <<EOF
{
  "business_id": "corp-directory",
  "type": "ldap",
  "config": {
    "url": "$ldap_url",
    "bind_dn": "$sync_dn",
    "user_base": "ou=people,$base_dn",
    "group_base": "ou=groups,$base_dn"
  },
  "auth_config": {"password": "$(cat "$work/idsync.pw")"},
  "schedule": {
    "incremental_every_minutes": 1,
    "full_cron": "0 2 * * *",
    "time_zone": "Europe/Berlin"
  }
}
EOF
)
connector_id=$(api POST /api/v1/connectors "@$work/connector.json" | json 'd["id"]')
rm "$work/connector.json"
api POST "/api/v1/connectors/$connector_id/test" '{}' >/dev/null ||
  fail "the dispatcher cannot bind to the directory (POST /test)"
connector=$(api GET "/api/v1/connectors/$connector_id")
echo "$connector" | json '"connector {id} {business_id}: type {type}, auth_config_set {auth_config_set}".format(**d)'
show_schedule "$connector"
next_incremental=$(echo "$connector" | json 'd["schedule"]["next_incremental_at"]')

echo
echo "== 5. A first full sync now, through the API (the schedule's first is tonight)"
run_id=$(api POST "/api/v1/connectors/$connector_id/sync" '{}' | json 'd["id"]')
run=$(wait_for_run "$run_id")
echo "$run" | show_run
[ "$(echo "$run" | json 'd["status"]')" = succeeded ] || fail "the first sync did not succeed"
identities=$(api GET "/api/v1/identities?source=corp-directory&limit=100")
[ "$(echo "$identities" | json 'd["total"]')" = 20 ] || fail "expected 20 identities: $identities"
grants=$(api GET "/api/v1/grants?source=corp-directory&limit=1" | json 'd["total"]')
[ "$grants" = 14 ] || fail "expected 14 grants (group memberships), the API has $grants"
person=efischer
ok "20 identities and 14 grants (group memberships); $(echo "$identities" | json \
  "'{external_id}: {display_name}, {job_title}, {department}'.format(**next(i for i in d['items'] if i['external_id'] == '$person'))")"

echo
echo "== 6. In the directory: $person moves to Platform Engineering as a Senior Software Engineer"
# The connector's incremental watermark is at or before the full sync's start
# (in whole seconds) and the search is modifyTimestamp >= watermark, so a
# change made any time after that start is read by the next incremental.
ldapmodify -x -H "$ldap_url" -D "$admin_dn" -y "$work/admin.pw" >/dev/null <<EOF
dn: uid=$person,ou=people,$base_dn
changetype: modify
replace: title
title: Senior Software Engineer
-
replace: departmentNumber
departmentNumber: Platform Engineering
EOF
ldapsearch -x -LLL -H "$ldap_url" -D "$sync_dn" -y "$work/idsync.pw" \
  -b "uid=$person,ou=people,$base_dn" -s base '(objectClass=*)' title departmentNumber modifyTimestamp |
  grep -v '^dn:' | sed '/^$/d; s/^/  /'

echo
echo "== 7. Nobody starts a sync now: waiting for the scheduler (due at $next_incremental)"
waited=$(date +%s.%N)
scheduled=""
for _ in $(seq 180); do  # up to 90 s
  scheduled=$(api GET "/api/v1/audit-events?action=sync.scheduled&limit=100" | json \
    "next((e for e in d['items'] if e['action'] == 'sync.scheduled' and e['resource_id'] == '$connector_id'), '')")
  [ -n "$scheduled" ] && break
  sleep 0.5
done
[ -n "$scheduled" ] || fail "no sync.scheduled audit event for connector $connector_id within 90 s"
audit() { echo "$scheduled" | json "$1"; }
scheduled_run=$(audit 'int(d["details"]["run_id"])')
echo "audit: $(audit '"{at} actor {actor}: {action} connector {resource_id}".format(**d)') $(audit 'd["details"]')"
echo "       (after $(elapsed "$waited") s of waiting)"
[ "$(audit 'd["actor"]')" = scheduler ] || fail "the scheduled run's actor is not the scheduler"
run=$(wait_for_run "$scheduled_run")
echo "$run" | show_run
[ "$(echo "$run" | json 'd["status"]')" = succeeded ] || fail "the scheduled sync did not succeed"
# At 02:00 Berlin time the nightly full sync falls due instead, and covers it.
[ "$(audit 'd["details"]["kind"]')" = incremental ] ||
  echo "(a full sync was due too, and ran instead of the incremental one)"
[ "$(echo "$run" | json 'd["updated"] >= 1')" = True ] || fail "the scheduled sync updated nothing"

echo
echo "== 8. Checks"
# Every event for the webhook delivered (the receiver writes an event before
# it answers 2xx).
for _ in $(seq 100); do
  deliveries=$(api GET "/api/v1/webhooks/$webhook_id/deliveries?limit=100")
  echo "$deliveries" | json 'all(i["state"] == "delivered" for i in d["items"])' |
    grep -q True && break
  sleep 0.1
done
echo "$deliveries" | json 'all(i["state"] == "delivered" for i in d["items"])' |
  grep -q True || fail "webhook deliveries not all delivered: $deliveries"

# The receiver: a verified identity.updated from the scheduled run, for the
# person changed and no one else. Sync events carry the key and the store
# id; the details are read from the API.
updated=$(python3 - "$work/events.jsonl" "$scheduled_run" <<'EOF'
import json, sys
events = [json.loads(line) for line in open(sys.argv[1])]
updated = [e for e in events if e["type"] == "identity.updated" and e["verified"]]
items = [(e["data"]["run_id"], i["id"], i["external_id"]) for e in updated for i in e["data"]["items"]]
print(" ".join(f"{run}:{id}:{external_id}" for run, id, external_id in items))
EOF
) || fail "no events file from webhook_receiver.py"
[[ $updated =~ ^$scheduled_run:[0-9]+:$person$ ]] ||
  fail "expected one verified identity.updated for $person from run $scheduled_run, got: '$updated'"
identity_id=$(echo "$updated" | cut -d: -f2)
ok "the receiver got one verified identity.updated, from run $scheduled_run: $person (identity $identity_id)"

identity=$(api GET "/api/v1/identities/$identity_id")
echo "$identity" | json '"   GET /api/v1/identities/{id}: {external_id} {display_name}, {job_title}, {department}, source {source}".format(**d)'
[ "$(echo "$identity" | json '"{job_title}/{department}".format(**d)')" = \
  "Senior Software Engineer/Platform Engineering" ] ||
  fail "the store does not show the new title and department: $identity"
ok "the store shows $person's new title and department"

connector=$(api GET "/api/v1/connectors/$connector_id")
next=$(echo "$connector" | json 'd["schedule"]["next_incremental_at"]')
[ "$next" != "$next_incremental" ] || fail "next_incremental_at did not move after the scheduled run"
ok "next_incremental_at moved on: $next_incremental -> $next"

echo
echo "== Done in $(elapsed "$started") s"
