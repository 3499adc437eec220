#!/usr/bin/env bash
# The main job, offline, on the embedded defaults (store ./recordings, certs ./certs):
# build tapedeck, start the example LLM-shaped upstream, record an agent run through the
# proxy, show what was recorded (sessions, span tree, analysis), stop the upstream and
# replay the run with no network at all.
#
# Needs: cargo, python3 (standard library only), curl.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
step() { printf '\n\033[1m==> %s\033[0m\n' "$*" >&2; }

step "building tapedeck (release)"
cargo build --release --quiet --bin tapedeck --example upstream
TAPEDECK="$ROOT/target/release/tapedeck"
UPSTREAM="$ROOT/target/release/examples/upstream"

work="$(mktemp -d)"
up_pid=""
cleanup() { [[ -n $up_pid ]] && kill "$up_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

step "starting the example LLM-shaped upstream (HTTPS, its own test CA)"
"$UPSTREAM" --tls --port 0 --ca-out "$work/upstream-ca.pem" >"$work/upstream.out" 2>&1 &
up_pid=$!
for _ in $(seq 1 100); do grep -q "listening on" "$work/upstream.out" 2>/dev/null && break; sleep 0.1; done
BASE="$(sed -n 's/^listening on //p' "$work/upstream.out")"
echo "upstream: $BASE" >&2
export LLM_BASE_URL="$BASE/v1" WEATHER_URL="$BASE/weather" QUESTION="What is the weather in Tokyo?"

SESSION="demo-$(date +%Y%m%d-%H%M%S)"
step "tapedeck record --session $SESSION -- python3 examples/weather_agent.py"
"$TAPEDECK" record --session "$SESSION" --upstream-ca "$work/upstream-ca.pem" -- python3 examples/weather_agent.py

step "tapedeck sessions"
"$TAPEDECK" sessions

step "tapedeck show $SESSION"
"$TAPEDECK" show "$SESSION"

step "tapedeck analyze $SESSION"
"$TAPEDECK" analyze "$SESSION"

step "stopping the upstream: from here on there is no network to talk to"
kill "$up_pid"; wait "$up_pid" 2>/dev/null || true; up_pid=""
curl -s -o /dev/null --max-time 2 "$BASE/weather" && { echo "the upstream is still up?" >&2; exit 1; } || echo "upstream is gone" >&2

step "tapedeck replay --session $SESSION -- python3 examples/weather_agent.py (offline)"
"$TAPEDECK" replay --session "$SESSION" -- python3 examples/weather_agent.py

step "tapedeck export $SESSION -o $work/$SESSION.jsonl (a git-friendly tape)"
"$TAPEDECK" export "$SESSION" -o "$work/$SESSION.jsonl"
head -c 600 "$work/$SESSION.jsonl"; echo
echo >&2
echo "recorded into ./recordings (session $SESSION); tapedeck's CA is in ./certs" >&2
