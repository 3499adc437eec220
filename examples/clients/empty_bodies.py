#!/usr/bin/env python3
"""Zero-byte bodies with python `requests` and `httpx` (HTTP/1.1 and HTTP/2).

Against the tls_server.py fixture, each client makes, one after the other:
  GET /empty/200, POST /empty/201, PUT /empty/202   (that status, Content-Length: 0)
  GET /nocontent, DELETE /nocontent                   (204)
  GET /etag with If-None-Match: "v1"                  (304)
  HEAD /item/7                                        (Content-Length of the GET, no body)

Prints one line per request: client, request, status, body length, Content-Length, and
the exception when one is raised (an empty body cut short shows up here as
`ChunkedEncodingError` or `RemoteProtocolError`). Exit 1 if any request raised. Honours
HTTPS_PROXY, SSL_CERT_FILE and REQUESTS_CA_BUNDLE.

Usage: empty_bodies.py [requests|httpx-h1|httpx-h2]...   (default: all three)
Env: FIXTURE_URL
"""

import os
import sys

import httpx
import requests

REQUESTS = [
    ("GET", "/empty/200", {}),
    ("POST", "/empty/201", {}),
    ("PUT", "/empty/202", {}),
    ("GET", "/nocontent", {}),
    ("DELETE", "/nocontent", {}),
    ("GET", "/etag", {"if-none-match": '"v1"'}),
    ("HEAD", "/item/7", {}),
]


def main() -> int:
    base = os.environ["FIXTURE_URL"]
    clients = sys.argv[1:] or ["requests", "httpx-h1", "httpx-h2"]
    failed = 0
    for name in clients:
        if name == "requests":
            session = requests.Session()
            send = lambda m, url, h: session.request(m, url, headers=h, timeout=30)  # noqa: E731
            close = session.close
        elif name in ("httpx-h1", "httpx-h2"):
            h2 = name == "httpx-h2"
            client = httpx.Client(http1=not h2, http2=h2, timeout=30.0)
            send = lambda m, url, h: client.request(m, url, headers=h)  # noqa: E731
            close = client.close
        else:
            print(f"empty_bodies: unknown client {name}", file=sys.stderr)
            return 2
        for method, path, headers in REQUESTS:
            label = f"{name}: {method} {path}"
            try:
                r = send(method, base + path, headers)
                miss = r.headers.get("x-tapedeck-miss")
                print(
                    f"{label} -> {r.status_code}, {len(r.content)} bytes, "
                    f"content-length {r.headers.get('content-length', '-')}" + (f" MISS {miss}" if miss else "")
                )
            except Exception as e:  # the point is to report what the client raised
                failed += 1
                print(f"{label} -> error {type(e).__name__}: {e}")
        close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
