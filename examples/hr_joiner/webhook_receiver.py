#!/usr/bin/env python3
"""Receives idsync's webhooks, verifies their Standard Webhooks signature and
appends each verified event, once, as a JSON line to a file.

Signature (docs/webhooks.md): webhook-signature is "v1,<base64 HMAC-SHA256>"
(several may be given, separated by spaces) of "<webhook-id>.<webhook-timestamp>.<body>",
keyed with the base64-decoded part of the webhook's secret "whsec_<base64>".

Python 3 standard library only.

Usage: python3 webhook_receiver.py --secret-file FILE --events FILE
                                   [--port 8001] [--port-file FILE]

The secret file holds the whsec_... secret that POST /api/v1/webhooks
returned (it is shown only once). It is read on each request, so it may be
written after the receiver starts.
"""
import argparse
import base64
import hashlib
import hmac
import http.server
import json
import os
import threading
import time

TOLERANCE_SECONDS = 5 * 60  # refuse replays of old (or future) deliveries


def log(message):
    print(f"[webhook_receiver] {message}", flush=True)


def verify(secret, msg_id, timestamp, body, signature_header):
    """Returns None when the delivery is authentic, else the reason it is not."""
    if not secret.startswith("whsec_"):
        return "the secret file does not hold a whsec_ secret"
    try:
        key = base64.b64decode(secret[len("whsec_"):], validate=True)
    except ValueError:
        return "the secret file does not hold a valid whsec_ secret"
    if not (msg_id and timestamp and signature_header):
        return "missing webhook-id, webhook-timestamp or webhook-signature"
    try:
        if abs(time.time() - int(timestamp)) > TOLERANCE_SECONDS:
            return "timestamp too old or too new"
    except ValueError:
        return "bad webhook-timestamp"
    signed = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for candidate in signature_header.split():
        version, _, signature = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(signature, expected):
            return None
    return "no matching v1 signature"


class Receiver(http.server.ThreadingHTTPServer):
    def __init__(self, address, secret_file, events_file):
        super().__init__(address, Handler)
        self.secret_file = secret_file
        self.events_file = events_file
        self.lock = threading.Lock()
        self.seen = set()  # delivery is at least once: de-duplicate by webhook-id
        if os.path.exists(events_file):
            with open(events_file) as f:
                self.seen = {json.loads(line)["webhook_id"] for line in f if line.strip()}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self, status, text=""):
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        msg_id = self.headers.get("webhook-id", "")
        try:
            with open(self.server.secret_file) as f:
                secret = f.read().strip()
        except OSError:
            log(f"{msg_id}: no secret yet; answering 503 (idsync retries)")
            return self.reply(503, "not ready")
        problem = verify(secret, msg_id, self.headers.get("webhook-timestamp", ""), body,
                         self.headers.get("webhook-signature", ""))
        if problem:
            log(f"REFUSED {msg_id or '(no id)'}: {problem}")
            return self.reply(401, problem)

        event = json.loads(body)
        with self.server.lock:
            if msg_id in self.server.seen:
                log(f"{msg_id}: already received; ignored")
                return self.reply(200, "duplicate")
            record = {"webhook_id": msg_id, "type": event["type"], "verified": True,
                      "timestamp": event.get("timestamp"), "data": event.get("data")}
            with open(self.server.events_file, "a") as f:
                f.write(json.dumps(record) + "\n")
            self.server.seen.add(msg_id)
        items = (event.get("data") or {}).get("items") or []
        who = ", ".join(f"{i.get('external_id', '')} {i.get('email', '')}".strip() for i in items)
        log(f"verified {msg_id} {event['type']}: {who}")
        return self.reply(204)

    def log_message(self, format, *args):
        pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001, help="0 picks a free port")
    parser.add_argument("--port-file", help="write the port here once listening")
    parser.add_argument("--secret-file", required=True)
    parser.add_argument("--events", required=True, help="verified events, one JSON a line")
    args = parser.parse_args()
    server = Receiver((args.host, args.port), args.secret_file, args.events)
    port = server.server_address[1]
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as f:
            f.write(f"{port}\n")
        os.replace(args.port_file + ".tmp", args.port_file)
    log(f"listening on http://{args.host}:{port}/, appending verified events to {args.events}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
