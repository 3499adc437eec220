#!/usr/bin/env python3
"""httpx AsyncClient: N GETs of FIXTURE_URL/item/I issued at once with asyncio.gather.

  --http2        one HTTP/2 connection, every request a stream on it: one GET
                 (/item/N) goes first, alone, and the N follow once the connection is
                 up. Gathered from the start, through a proxy, httpcore 1.0's pool opens
                 more connections while the first one is still being set up, and may
                 close a fresh one under the request it was given: that request fails
                 in the client with "Invalid input ConnectionInputs.SEND_SETTINGS in
                 state ConnectionState.CLOSED" before it sends a byte (seen once in CI,
                 on a loaded machine).
  --pool K       HTTP/1.1 with at most K connections (httpx.Limits(max_connections=K))

Prints one line per request in request order (status, HTTP version, body hash) and, for
a tapedeck miss, its `x-tapedeck-miss` kind; exit 0 unless a request raised. Honours
HTTPS_PROXY and SSL_CERT_FILE (httpx's trust_env).

Usage: gather_httpx.py (--http2 | --pool K) [--n 24]      env FIXTURE_URL
"""

import argparse
import asyncio
import hashlib
import os
import sys

import httpx


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = ap.add_mutually_exclusive_group(required=True)
    group.add_argument("--http2", action="store_true")
    group.add_argument("--pool", type=int)
    ap.add_argument("--n", type=int, default=24)
    args = ap.parse_args()
    base = os.environ["FIXTURE_URL"]

    if args.http2:
        client = httpx.AsyncClient(http1=False, http2=True, timeout=30.0)
    else:
        client = httpx.AsyncClient(
            http2=False, timeout=30.0, limits=httpx.Limits(max_connections=args.pool)
        )
    async with client:
        if args.http2:
            first = await client.get(f"{base}/item/{args.n}")
            digest = hashlib.sha256(first.content).hexdigest()[:12]
            print(f"first: {first.status_code} {first.http_version} {digest}")
        results = await asyncio.gather(
            *(client.get(f"{base}/item/{i}") for i in range(args.n)), return_exceptions=True
        )
    failed = 0
    for i, r in enumerate(results):
        if isinstance(r, Exception):
            failed += 1
            print(f"item {i}: error {type(r).__name__}: {r}")
            continue
        miss = r.headers.get("x-tapedeck-miss")
        digest = hashlib.sha256(r.content).hexdigest()[:12]
        print(f"item {i}: {r.status_code} {r.http_version} {digest}" + (f" MISS {miss}" if miss else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
