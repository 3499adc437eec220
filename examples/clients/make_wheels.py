#!/usr/bin/env python3
"""Builds the wheels that examples/clients.sh uploads to its local pypiserver.

Ten wheels of eight small pure-Python distributions with dependencies between them:

  tdk-core 1.0.0, 1.1.0                  no dependencies
  tdk-text 1.0.0                         tdk-core>=1.1   (so pip must take the newer core)
  tdk-net 1.0.0                          tdk-core
  tdk-store 1.0.0                        tdk-net, tdk-text
  tdk-cli 1.0.0                          tdk-store, tdk-net
  tdk-report 1.0.0                       tdk-text
  tdk-plugins 1.0.0, 2.0.0               2.0.0 needs tdk-core<1  (unsatisfiable next to
                                         tdk-text: the resolver must back off to 1.0.0)
  tdk-extras 0.9.0                       tdk-report

Wheels only: an sdist would make pip fetch a build backend (setuptools) from the index,
and the local index holds only what this script builds. Each wheel is a plain zip
written here (PEP 427: the package, METADATA, WHEEL, RECORD) with fixed timestamps, so
the bytes are a pure function of this file.

Usage: make_wheels.py OUT_DIR     (writes OUT_DIR/*.whl)
"""

import base64
import hashlib
import os
import sys
import zipfile

DISTS = [
    ("tdk-core", "1.0.0", []),
    ("tdk-core", "1.1.0", []),
    ("tdk-text", "1.0.0", ["tdk-core>=1.1"]),
    ("tdk-net", "1.0.0", ["tdk-core"]),
    ("tdk-store", "1.0.0", ["tdk-net", "tdk-text"]),
    ("tdk-cli", "1.0.0", ["tdk-store", "tdk-net"]),
    ("tdk-report", "1.0.0", ["tdk-text"]),
    ("tdk-plugins", "1.0.0", []),
    ("tdk-plugins", "2.0.0", ["tdk-core<1"]),
    ("tdk-extras", "0.9.0", ["tdk-report"]),
]
DATE = (1980, 1, 1, 0, 0, 0)


def record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def build(out: str, name: str, version: str, requires: list) -> str:
    module = name.replace("-", "_")
    info = f"{module}-{version}.dist-info"
    body = "\n".join(
        [
            f'"""{name} {version}: a distribution of the tapedeck client scenarios."""',
            f"NAME = {name!r}",
            f"VERSION = {version!r}",
            f"REQUIRES = {requires!r}",
            "TABLE = " + repr([hashlib.sha256(f"{name}{version}{i}".encode()).hexdigest() for i in range(12)]),
            "",
        ]
    )
    metadata = "".join(
        [
            "Metadata-Version: 2.1\n",
            f"Name: {name}\n",
            f"Version: {version}\n",
            f"Summary: {name}, built by examples/clients/make_wheels.py\n",
            "License: MIT\n",
            *(f"Requires-Dist: {r}\n" for r in requires),
        ]
    )
    wheel = "Wheel-Version: 1.0\nGenerator: tapedeck-examples\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    files = [
        (f"{module}/__init__.py", body.encode()),
        (f"{info}/METADATA", metadata.encode()),
        (f"{info}/WHEEL", wheel.encode()),
    ]
    record = "\n".join([record_line(p, d) for p, d in files] + [f"{info}/RECORD,,", ""])
    files.append((f"{info}/RECORD", record.encode()))
    path = os.path.join(out, f"{module}-{version}-py3-none-any.whl")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for p, d in files:
            zi = zipfile.ZipInfo(p, DATE)
            zi.external_attr = 0o644 << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(zi, d)
    return path


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    os.makedirs(sys.argv[1], exist_ok=True)
    for name, version, requires in DISTS:
        build(sys.argv[1], name, version, requires)
    return 0


if __name__ == "__main__":
    sys.exit(main())
