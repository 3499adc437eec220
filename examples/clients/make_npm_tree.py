#!/usr/bin/env python3
"""Writes the npm packages that examples/clients.sh publishes to its local verdaccio.

A dependency tree of 60 small packages (63 versions), four levels deep with shared
dependencies, so that `npm install` fetches dozens of packuments and tarballs at once:

  tdk-top-0..5      (6)   the app's direct dependencies, 2-3 uppers each
  tdk-upper-00..09  (10)  3 mids and a leaf each
  tdk-mid-00..13    (14)  3 leaves each, some a scoped util; two need tdk-leaf-00@^2
  @tdk/util-0..5    (6)   2 leaves each (scoped names: /@tdk%2futil-0 on the wire)
  tdk-leaf-00..23   (24)  no dependencies; tdk-leaf-00 and -01 also exist as 2.0.0
                          (the app and two mids want ^2, the rest ^1: npm nests copies),
                          tdk-leaf-02 as 1.0.0 and 1.1.0 (^1 resolves to the newer)

Every file is a pure function of the names (no clock, no randomness).

Usage: make_npm_tree.py OUT_DIR
  OUT_DIR/packages/NAME@VERSION/   one folder per version, with package.json, index.js,
                                   data.json and README.md (scoped: @tdk+util-0@1.0.0)
  OUT_DIR/publish-order.txt        `ROUND FOLDER` lines: a package's Nth version is in
                                   round N (publish the rounds in turn, so the highest
                                   version is the latest; a round may go in parallel)
  OUT_DIR/app-package.json         the app that `npm install` installs
"""

import hashlib
import json
import os
import sys

LEAVES = [f"tdk-leaf-{i:02d}" for i in range(24)]
UTILS = [f"@tdk/util-{i}" for i in range(6)]
MIDS = [f"tdk-mid-{i:02d}" for i in range(14)]
UPPERS = [f"tdk-upper-{i:02d}" for i in range(10)]
TOPS = [f"tdk-top-{i}" for i in range(6)]


def dependencies(name: str) -> dict:
    """What each package depends on (semver ranges)."""
    if name in LEAVES:
        return {}
    if name in UTILS:
        i = UTILS.index(name)
        return {LEAVES[(2 * i + 3) % 24]: "^1.0.0", LEAVES[(2 * i + 4) % 24]: "^1.0.0"}
    if name in MIDS:
        i = MIDS.index(name)
        deps = {LEAVES[(i + k) % 24]: "^1.0.0" for k in (2, 7, 13)}
        if i % 3 == 0:
            deps[UTILS[(i // 3) % 6]] = "^1.0.0"
        if i in (4, 9):
            deps[LEAVES[0]] = "^2.0.0"
        elif i % 2 == 0:
            deps[LEAVES[0]] = "^1.0.0"
        return deps
    if name in UPPERS:
        i = UPPERS.index(name)
        deps = {MIDS[(i + k) % 14]: "^1.0.0" for k in (0, 3, 5)}
        deps[LEAVES[(3 * i + 1) % 24]] = "^1.0.0"
        return deps
    if name in TOPS:
        i = TOPS.index(name)
        deps = {UPPERS[(i + k) % 10]: "^1.0.0" for k in ((0, 4) if i % 2 else (0, 4, 7))}
        if i in (1, 5):
            deps[UTILS[i]] = "^1.0.0"
        return deps
    raise ValueError(name)


def versions(name: str) -> list:
    if name in (LEAVES[0], LEAVES[1]):
        return ["1.0.0", "2.0.0"]
    if name == LEAVES[2]:
        return ["1.0.0", "1.1.0"]
    return ["1.0.0"]


def data(name: str, version: str) -> list:
    """A few hundred bytes to a few KB of deterministic content."""
    seed = hashlib.sha256(f"{name}@{version}".encode()).digest()
    return [hashlib.sha256(seed + bytes([i])).hexdigest() for i in range(4 + seed[0] % 40)]


def write_package(out: str, name: str, version: str) -> str:
    folder = f"{name.replace('/', '+')}@{version}"
    d = os.path.join(out, "packages", folder)
    os.makedirs(d, exist_ok=True)
    deps = dependencies(name)
    manifest = {
        "name": name,
        "version": version,
        "description": f"{name}: a package of the tapedeck client scenarios",
        "main": "index.js",
        "license": "MIT",
        "dependencies": deps,
    }
    files = {
        "package.json": json.dumps(manifest, indent=2) + "\n",
        "index.js": (
            '"use strict";\n'
            f"module.exports = {{ name: {json.dumps(name)}, version: {json.dumps(version)}, "
            f"deps: {json.dumps(sorted(deps))} }};\n"
        ),
        "data.json": json.dumps(data(name, version)) + "\n",
        "README.md": f"# {name}\n\nVersion {version}, generated for tapedeck's client tests.\n",
    }
    for fname, text in files.items():
        with open(os.path.join(d, fname), "w") as f:
            f.write(text)
    return folder


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = sys.argv[1]
    order = []
    for level in (LEAVES, UTILS, MIDS, UPPERS, TOPS):
        for name in level:
            for n, v in enumerate(versions(name), 1):
                order.append(f"{n} {write_package(out, name, v)}")
    with open(os.path.join(out, "publish-order.txt"), "w") as f:
        f.write("\n".join(order) + "\n")
    app = {
        "name": "tdk-app",
        "version": "1.0.0",
        "private": True,
        "dependencies": {**{t: "^1.0.0" for t in TOPS}, LEAVES[1]: "^2.0.0"},
    }
    with open(os.path.join(out, "app-package.json"), "w") as f:
        f.write(json.dumps(app, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
