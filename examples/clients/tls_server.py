#!/usr/bin/env python3
"""A small HTTPS server (HTTP/2 and HTTP/1.1 by ALPN, hypercorn) for examples/clients.sh.

The local servers the client scenarios talk to, all on 127.0.0.1 with a free port and a
certificate of the test's own "corporate" CA:

  --app fixture         fast endpoints (answered in about a millisecond):
                          GET  /item/N            a small JSON document, different per N
                          ANY  /empty/200|201|202 that status, Content-Length: 0
                          ANY  /nocontent         204
                          GET  /etag              200 with ETag "v1"; 304 when
                                                  If-None-Match: "v1" is sent
                        POST /upload            a multipart form: each part's name,
                                                  filename, size and sha256, as JSON
                          HEAD /item/N            the GET's headers (Content-Length N>0), no body
  --app pypi --root DIR pypiserver (pinned) on DIR: /simple/, uploads without auth,
                        no fallback to any public index
  --app git --root DIR  `git http-backend` (smart HTTP, read-only) for the repositories
                        in DIR

Listens on 127.0.0.1 and prints `listening on https://localhost:PORT` on stdout once it
accepts connections (a host name, not the IP: npm through a proxy checks an IP host's
certificate against the name "localhost"), and serves until SIGTERM or SIGINT.
"""

import argparse
import asyncio
import email.policy
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from email.parser import BytesParser

from hypercorn.asyncio import serve
from hypercorn.config import Config


# --- the fixture ------------------------------------------------------------------------
def item(n: int) -> bytes:
    """The document of /item/N: deterministic, different for every N."""
    doc = {"n": n, "name": f"item {n}", "tags": ["alpha", "beta"][: 1 + n % 2], "square": n * n}
    return json.dumps(doc, sort_keys=True).encode()


async def read_body(receive) -> bytes:
    body = b""
    while True:
        msg = await receive()
        body += msg.get("body", b"")
        if not msg.get("more_body"):
            return body


async def fixture(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    request_body = await read_body(receive)
    method, path = scope["method"], scope["path"]
    headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
    status, extra, body = 404, [], b'{"error": "no such path"}'
    send_body = True
    parts = path.strip("/").split("/")
    if parts[0] == "item" and len(parts) == 2 and parts[1].isdigit() and method in ("GET", "HEAD"):
        status, body = 200, item(int(parts[1]))
        send_body = method == "GET"
    elif parts[0] == "empty" and len(parts) == 2 and parts[1] in ("200", "201", "202"):
        status, body = int(parts[1]), b""
    elif path == "/nocontent":
        status, body = 204, b""
    elif path == "/etag":
        extra = [(b"etag", b'"v1"')]
        if headers.get("if-none-match") == '"v1"':
            status, body = 304, b""
        else:
            status, body = 200, b'{"version": 1}'
    elif path == "/upload" and method == "POST":
        status, body = 200, form_summary(headers.get("content-type", ""), request_body)
    out = [(b"content-type", b"application/json")] + extra
    if status not in (204, 304):
        out.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": body if send_body else b""})


def form_summary(content_type: str, body: bytes) -> bytes:
    """What a multipart form held, independent of its boundary."""
    msg = BytesParser(policy=email.policy.default).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    if not msg.is_multipart():
        return json.dumps({"error": "not a multipart form"}).encode()
    parts = []
    for part in msg.iter_parts():
        data = part.get_payload(decode=True) or b""
        parts.append(
            {
                "name": part.get_param("name", header="content-disposition"),
                "filename": part.get_filename(),
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        )
    return json.dumps({"parts": parts}, sort_keys=True).encode()


# --- pypiserver ---------------------------------------------------------------------------
def at_least_one_chunk(app):
    """hypercorn's WSGI wrapper sends the status line with the first body chunk, so a WSGI
    answer with no chunk at all (pypiserver's empty 200 to an upload) would never start:
    hand it one empty chunk."""

    def wrapped(environ, start_response):
        body = app(environ, start_response)
        try:
            empty = True
            for chunk in body:
                empty = False
                yield chunk
            if empty:
                yield b""
        finally:
            if hasattr(body, "close"):
                body.close()

    return wrapped


# --- git smart HTTP through the git-http-backend CGI ------------------------------------
def git_app(root: str, backend: str):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": root,
            "GIT_HTTP_EXPORT_ALL": "1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "REQUEST_METHOD": scope["method"],
            "PATH_INFO": scope["path"],
            "QUERY_STRING": scope["query_string"].decode(),
            "CONTENT_TYPE": headers.get("content-type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": "127.0.0.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
        }
        if "git-protocol" in headers:
            env["GIT_PROTOCOL"] = headers["git-protocol"]
        proc = await asyncio.create_subprocess_exec(
            backend, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        out, err = await proc.communicate(body)
        head, _, payload = out.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = out.partition(b"\n\n")
        status, resp_headers = 200, []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                resp_headers.append((name.strip().lower().encode(), value.strip().encode()))
        if proc.returncode != 0 and not head:
            status, payload = 500, err
        resp_headers.append((b"content-length", str(len(payload)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": resp_headers})
        await send({"type": "http.response.body", "body": payload})

    return app


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--app", choices=("fixture", "pypi", "git"), required=True)
    ap.add_argument("--root", help="the package or repository folder (pypi, git)")
    ap.add_argument("--cert", required=True, help="PEM: the server certificate (chain)")
    ap.add_argument("--key", required=True, help="PEM: its private key")
    args = ap.parse_args()

    mode = "asgi"
    if args.app == "fixture":
        app = fixture
    elif args.app == "pypi":
        import pypiserver

        # No auth (uploads come from the test's own setup); never fall back to pypi.org.
        app = at_least_one_chunk(
            pypiserver.app(roots=[args.root], authenticate=[], password_file=".", disable_fallback=True)
        )
        mode = "wsgi"
    else:
        backend = shutil.which("git-http-backend") or "/usr/lib/git-core/git-http-backend"
        if not os.access(backend, os.X_OK):
            print(f"tls_server: no git-http-backend at {backend}", file=sys.stderr)
            return 1
        app = git_app(args.root, backend)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]

    config = Config()
    config.bind = [f"fd://{sock.detach()}"]
    config.certfile, config.keyfile = args.cert, args.key
    config.accesslog = None
    config.errorlog = "-"
    config.loglevel = "WARNING"
    config.keep_alive_timeout = 30

    async def run():
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print(f"listening on https://localhost:{port}", flush=True)
        await serve(app, config, shutdown_trigger=stop.wait, mode=mode)

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
