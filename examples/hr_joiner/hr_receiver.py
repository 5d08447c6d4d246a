#!/usr/bin/env python3
"""Receives an HR system's "employee.hired" webhooks and creates the new hire
in idsync through POST /api/v1/identities.

The HR event id becomes the Idempotency-Key, so when the HR system sends the
same event again (it retries on timeouts and errors), idsync replays its
first answer and creates nothing twice.

Python 3 standard library only. Settings come from the environment:

  IDSYNC_URL    the dispatcher's REST address, e.g. http://127.0.0.1:8080
  IDSYNC_TOKEN  an admin service token (idsync_svc_...)

Usage: python3 hr_receiver.py [--port 8000] [--port-file FILE]
"""
import argparse
import http.server
import json
import os
import sys
import urllib.error
import urllib.request


def log(message):
    print(f"[hr_receiver] {message}", flush=True)


def to_identity(employee):
    """Maps the HR system's employee record to idsync's CreateIdentityRequest."""
    first = employee.get("first_name", "")
    last = employee.get("last_name", "")
    identity = {
        "external_id": employee["employee_id"],
        "email": employee.get("work_email", ""),
        "first_name": first,
        "last_name": last,
        "display_name": f"{first} {last}".strip(),
        "department": employee.get("department", ""),
        "job_title": employee.get("job_title", ""),
        "manager_external_id": employee.get("manager_id", ""),
        "status": "active",
    }
    # Anything else the HR system sends that is worth keeping (strings only).
    attributes = {k: str(employee[k]) for k in ("start_date", "location") if k in employee}
    if attributes:
        identity["attributes"] = attributes
    return identity


def create_identity(identity, idempotency_key):
    """POSTs the identity; returns (HTTP status, headers, JSON body)."""
    request = urllib.request.Request(
        os.environ["IDSYNC_URL"].rstrip("/") + "/api/v1/identities",
        data=json.dumps(identity).encode(),
        method="POST",
        headers={
            "Authorization": "Bearer " + os.environ["IDSYNC_TOKEN"],
            "Content-Type": "application/json",
            "Idempotency-Key": idempotency_key,
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, json.load(response)
    except urllib.error.HTTPError as error:
        body = error.read()
        try:
            return error.code, error.headers, json.loads(body)
        except ValueError:
            return error.code, error.headers, {"message": body.decode(errors="replace")}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        try:
            event = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            event_id = event["event_id"]
            event_type = event["event_type"]
        except (ValueError, KeyError, TypeError):
            return self.reply(400, {"error": "expected a JSON event with event_id and event_type"})
        if event_type != "employee.hired":
            log(f"event {event_id}: {event_type} ignored")
            return self.reply(200, {"ignored": event_type})
        try:
            identity = to_identity(event["employee"])
        except (KeyError, TypeError):
            return self.reply(400, {"error": "employee.hired without employee.employee_id"})

        try:
            status, headers, body = create_identity(identity, "hr-" + event_id)
        except OSError as error:  # idsync unreachable: let the HR system retry
            log(f"event {event_id}: idsync unreachable ({error}); answering 503")
            return self.reply(503, {"error": "idsync unreachable"})

        external_id = identity["external_id"]
        if status == 201 and headers.get("Idempotent-Replayed") == "true":
            log(f"event {event_id}: {external_id} already created as identity {body['id']} "
                "(same event again: idsync replayed its answer, nothing new)")
            return self.reply(200, {"identity_id": body["id"], "replayed": True})
        if status == 201:
            log(f"event {event_id}: created identity {body['id']} for {external_id}")
            return self.reply(200, {"identity_id": body["id"], "replayed": False})
        if status == 409 and body.get("code") == "already_exists":
            # Another event (or a retry after the 24 h idempotency window)
            # for someone idsync already has: done, do not make HR retry.
            log(f"event {event_id}: {external_id} already exists in idsync")
            return self.reply(200, {"already_exists": True})
        if status == 429 or status >= 500:
            log(f"event {event_id}: idsync answered {status}; answering 503 so HR retries")
            return self.reply(503, {"error": body.get("message", "")})
        log(f"event {event_id}: idsync refused it: {status} {body.get('message', '')}")
        return self.reply(422, {"error": body.get("message", ""), "idsync_status": status})

    def log_message(self, format, *args):
        pass  # one line per event from do_POST is enough


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument("--port-file", help="write the port here once listening")
    args = parser.parse_args()
    for name in ("IDSYNC_URL", "IDSYNC_TOKEN"):
        if not os.environ.get(name):
            sys.exit(f"hr_receiver: set {name}")
    server = http.server.ThreadingHTTPServer((args.host, args.port), Handler)
    port = server.server_address[1]
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as f:
            f.write(f"{port}\n")
        os.replace(args.port_file + ".tmp", args.port_file)
    log(f"listening on http://{args.host}:{port}/, creating hires in {os.environ['IDSYNC_URL']}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
