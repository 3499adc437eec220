#!/usr/bin/env python3
"""Prints one line per tree: `PATH: N files, sha256 HEX16`, a hash of the tree's content.

The hash covers every file's path (relative), content and executable bit and every
symlink's target, in sorted order; never timestamps or owners. Folders named in
--exclude (e.g. __pycache__) are skipped wherever they are.

Usage: tree_hash.py [--exclude NAME]... DIR [DIR...]
"""

import argparse
import hashlib
import os
import sys


def tree_hash(root: str, exclude: set) -> tuple:
    h = hashlib.sha256()
    files = 0
    for base, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in exclude)
        for name in sorted(names) + [d for d in dirs if os.path.islink(os.path.join(base, d))]:
            path = os.path.join(base, name)
            rel = os.path.relpath(path, root)
            if os.path.islink(path):
                h.update(b"L" + rel.encode() + b"\0" + os.readlink(path).encode() + b"\0")
                continue
            mode = os.stat(path).st_mode
            h.update(b"F" + rel.encode() + b"\0" + (b"x" if mode & 0o111 else b"-"))
            with open(path, "rb") as f:
                h.update(hashlib.sha256(f.read()).digest())
            files += 1
    return files, h.hexdigest()[:16]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--exclude", action="append", default=[])
    ap.add_argument("dirs", nargs="+")
    args = ap.parse_args()
    for d in args.dirs:
        if not os.path.isdir(d):
            print(f"tree_hash: no folder {d}", file=sys.stderr)
            return 1
        files, digest = tree_hash(d, set(args.exclude))
        print(f"{os.path.basename(os.path.normpath(d))}: {files} files, sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
