#!/usr/bin/env python3
"""Writes a tape that repeats a recorded tape's events N times, one copy after another.

  tape_repeat.py IN.jsonl OUT.jsonl N [--session NAME]

Each copy's steps follow the previous copy's last step and its times follow the previous
copy's end, so the result reads as one long run of the same agent. examples/ui.sh makes
its 10,000-step session this way from a recorded 100-step one (recording all 10,000
exchanges through the debug build took 50 s of a CI run; importing them takes 3).
The input must hold its bodies inline (no IN.bodies/ beside it): they are not copied.
"""

import argparse
import json
import os
import sys


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("input")
    ap.add_argument("output")
    ap.add_argument("copies", type=int)
    ap.add_argument("--session", help="the new tape's session name (default: the input's)")
    args = ap.parse_args()
    bodies = os.path.splitext(args.input)[0] + ".bodies"
    if os.path.exists(bodies):
        print(f"{args.input}: has bodies beside it ({bodies}), which this does not copy", file=sys.stderr)
        return 1
    with open(args.input) as f:
        header = json.loads(f.readline())
        events = [json.loads(line) for line in f if line.strip()]
    if not events or args.copies < 1:
        print(f"{args.input}: no events to repeat (or copies < 1)", file=sys.stderr)
        return 1
    steps = max(e["step"] for e in events)
    span_ns = max(e["timing"]["end_ns"] for e in events) + 1_000_000
    header["events"] = len(events) * args.copies
    if args.session:
        header["session"] = args.session
    with open(args.output, "w") as out:
        out.write(json.dumps(header, separators=(",", ":")) + "\n")
        for k in range(args.copies):
            for e in events:
                timing = {f: v + k * span_ns if f in ("start_ns", "end_ns", "start_unix_ns", "end_unix_ns") else v
                          for f, v in e["timing"].items()}
                out.write(json.dumps(dict(e, step=e["step"] + k * steps, timing=timing), separators=(",", ":")) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
