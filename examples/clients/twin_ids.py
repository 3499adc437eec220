#!/usr/bin/env python3
"""Workers that each ask for a fresh id, then use it: identical requests answered apart.

Four threads (one `requests.Session` each) each `GET BASE/newid` after a random pause
and `POST BASE/echo {"order": <the id it got>, "customer": <its own name>}` after
another. Which worker gets which recorded id at replay depends on who asks first, as in
a real run; a replay must still serve every worker (tapedeck swaps the twins' ids, see
the README's Replay section).

Prints each worker's name, status and the customer the answer names, sorted (the ids
themselves differ from run to run); exit 1 on any status but 200. Honours HTTPS_PROXY and
REQUESTS_CA_BUNDLE.

Env: WEATHER_URL (the fixture's base is its scheme, host and port).
"""

import os
import random
import sys
import threading
import time
from urllib.parse import urlsplit

import requests

u = urlsplit(os.environ["WEATHER_URL"])
BASE = f"{u.scheme}://{u.netloc}"
seen = {}


def work(customer: str) -> None:
    s = requests.Session()
    time.sleep(random.random() * 0.03)
    order = s.get(BASE + "/newid", timeout=30).json()["id"]
    time.sleep(random.random() * 0.03)
    r = s.post(BASE + "/echo", json={"order": order, "customer": customer}, timeout=30)
    named = r.json()["body"]["customer"] if r.status_code == 200 else "-"
    seen[customer] = (r.status_code, named)


workers = [threading.Thread(target=work, args=(c,)) for c in ("alice", "bob", "carol", "dave")]
for w in workers:
    w.start()
for w in workers:
    w.join()
for customer, (status, named) in sorted(seen.items()):
    print(f"{customer}: {status} {named}")
sys.exit(0 if len(seen) == 4 and all(s == 200 for s, _ in seen.values()) else 1)
