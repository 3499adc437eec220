#!/usr/bin/env python3
"""File uploads as multipart forms, with python `requests` and `httpx` (HTTP/1.1 and
HTTP/2): each client draws a new random boundary for every request, so a replay that
matched a form by its bytes would miss every one.

Against the tls_server.py fixture, each client POSTs /upload twice: a small form (a text
field and a 3 KB text file) and a large one (a text field and a 2 MiB binary file, over
the 1 MiB a non-JSON body is otherwise kept whole). Prints one line per upload: client,
form, status and what the server read (each part's name, filename, size and sha256).
Exit 1 if any upload failed. Honours HTTPS_PROXY, SSL_CERT_FILE and REQUESTS_CA_BUNDLE.

Env: FIXTURE_URL, UPLOAD_CSRF (the small form's csrf_token)
"""

import hashlib
import json
import os
import sys

import httpx
import requests


CSRF = os.environ.get("UPLOAD_CSRF", "Csrf-Upl0ad-Form-Token-0000001")


def forms():
    text = "".join(f"line {i}: the quick brown fox\n" for i in range(100)).encode()[:3000]
    seed = hashlib.sha256(b"upload").digest()
    binary = (seed * ((2 << 20) // len(seed) + 1))[: 2 << 20]
    return [
        # A part named like a token's field whose value looks like a key: a secret
        # (stored [REDACTED]), still matched at replay.
        ("small", {"purpose": "notes", "csrf_token": CSRF}, ("notes.txt", text, "text/plain")),
        ("large", {"model": "whisper-1"}, ("speech.wav", binary, "audio/wav")),
    ]


def main() -> int:
    url = os.environ["FIXTURE_URL"] + "/upload"
    failed = 0
    clients = [
        ("requests", lambda data, files: requests.post(url, data=data, files=files, timeout=60)),
    ]
    for name, h2 in (("httpx-h1", False), ("httpx-h2", True)):
        c = httpx.Client(http2=h2, timeout=60)
        clients.append((name, lambda data, files, c=c: c.post(url, data=data, files=files)))
    for client, post in clients:
        for form, data, file in forms():
            try:
                r = post(data, {"file": file})
                seen = json.loads(r.text)
                print(client, form, r.status_code, json.dumps(seen, sort_keys=True))
                if r.status_code != 200 or "parts" not in seen:
                    failed += 1
            except Exception as e:  # printed, and counted
                print(client, form, "error", type(e).__name__, e)
                failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
