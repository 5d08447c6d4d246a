#!/usr/bin/env python3
"""Plays the HR system: POSTs one "employee.hired" event to the HR receiver,
then sends the very same event again, as an HR system does when it did not
get (or did not trust) the first answer. The second send must create nothing.

Python 3 standard library only.

Usage: python3 send_hire.py [--url http://127.0.0.1:8000/] [--times 2]
"""
import argparse
import json
import sys
import urllib.error
import urllib.request

EVENT = {
    "event_id": "evt_20261125_000123",
    "event_type": "employee.hired",
    "occurred_at": "2026-11-25T09:00:00Z",
    "employee": {
        "employee_id": "E4711",
        "first_name": "Ann",
        "last_name": "Lee",
        "work_email": "ann.lee@example.com",
        "department": "Finance",
        "job_title": "Accountant",
        "manager_id": "E0042",
        "location": "Berlin",
        "start_date": "2026-12-01",
    },
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000/", help="the HR receiver")
    parser.add_argument("--times", type=int, default=2, help="how often to send the event")
    args = parser.parse_args()
    data = json.dumps(EVENT).encode()
    for attempt in range(1, args.times + 1):
        label = "first send" if attempt == 1 else "sent again: an HR retry"
        request = urllib.request.Request(args.url, data=data, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=15) as response:
                status, body = response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            status, body = error.code, error.read().decode()
        print(f"[hr_system] {EVENT['event_id']} ({label}) -> {status} {body}", flush=True)
        if status != 200:
            sys.exit(1)


if __name__ == "__main__":
    main()
