#!/usr/bin/env bash
# Pushes a recorded agent run to a real OTLP backend, Arize Phoenix, and reads it back:
# span names, parentage, the kinds Phoenix derives from the GenAI attributes (AGENT, LLM,
# TOOL) and token counts must match `tapedeck show --json`; then an MCP session's tape,
# whose tools/call spans must be TOOL children of the execute_tool spans; and a live export
# (`record --otlp-endpoint`) that began while Phoenix was down, whose every span must
# reach it once it is up. Offline: Phoenix runs on loopback; the agent talks to the local
# LLM-shaped upstream.
#
# Env: TAPEDECK_BIN, UPSTREAM_BIN (default target/release/...), PHOENIX_VENV.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TAPEDECK_BIN=${TAPEDECK_BIN:-$ROOT/target/release/tapedeck}
UPSTREAM_BIN=${UPSTREAM_BIN:-$ROOT/target/release/examples/upstream}
VENV=${PHOENIX_VENV:-$ROOT/target/phoenix-venv}
PHOENIX_VERSION=20.26.1

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
step() { echo "==> $*" >&2; }
fail() { echo "phoenix: FAIL: $*" >&2; [ -f "$work/phoenix.log" ] && tail -20 "$work/phoenix.log" >&2; exit 1; }

if [ ! -f "$VENV/.installed-$PHOENIX_VERSION" ]; then
  step "installing arize-phoenix==$PHOENIX_VERSION into $VENV"
  python3 -m venv "$VENV"
  # shellcheck source=scripts/pip.sh
  source "$ROOT/scripts/pip.sh"
  pip_install "$VENV/bin/python" "arize-phoenix==$PHOENIX_VERSION"
  touch "$VENV/.installed-$PHOENIX_VERSION"
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
GRPC=$(free_port)

step "starting the upstream"
"$UPSTREAM_BIN" --tls --port 0 --ca-out "$work/up-ca.pem" > "$work/up.out" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do grep -q "listening on" "$work/up.out" 2>/dev/null && break; sleep 0.1; done
BASE=$(sed -n 's/^listening on //p' "$work/up.out")
[ -n "$BASE" ] || fail "the upstream did not start"

# Live export to a collector that is down at first: the agent runs once while nothing
# listens on Phoenix's port, and again once Phoenix is up. What the first run's batches
# could not deliver is kept and sent behind the first batch Phoenix takes.
step "live export: an agent run while the collector is down, another once it is up"
LLM_BASE_URL=$BASE/v1 WEATHER_URL=$BASE/weather AGENT_MODE=ignore PORT=$PORT WORK=$work AGENT="$ROOT/examples/weather_agent.py" \
  "$TAPEDECK_BIN" record --store "$work/live-store" --certs "$work/certs" --session phoenix-live \
  --upstream-ca "$work/up-ca.pem" --otlp-endpoint "http://127.0.0.1:$PORT" -- sh -c '
    python3 "$AGENT" > "$WORK/live1.out" && touch "$WORK/first-run-done"
    for _ in $(seq 1 360); do curl -s --noproxy "*" -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.5; done
    python3 "$AGENT" > "$WORK/live2.out"' > "$work/live.out" 2> "$work/live.err" &
live=$!
for _ in $(seq 1 300); do [ -f "$work/first-run-done" ] && break; sleep 0.1; done
[ -f "$work/first-run-done" ] || fail "the first live run did not finish: $(cat "$work/live.err")"

step "starting Phoenix on 127.0.0.1:$PORT"
PHOENIX_PORT=$PORT PHOENIX_GRPC_PORT=$GRPC PHOENIX_HOST=127.0.0.1 PHOENIX_WORKING_DIR="$work/phoenix" \
  "$VENV/bin/phoenix" serve > "$work/phoenix.log" 2>&1 &
pids+=($!)

step "recording an agent run against the local upstream"
LLM_BASE_URL=$BASE/v1 WEATHER_URL=$BASE/weather AGENT_MODE=ignore \
  "$TAPEDECK_BIN" -q record --store "$work/store" --certs "$work/certs" --session phoenix-demo \
  --upstream-ca "$work/up-ca.pem" -- python3 "$ROOT/examples/weather_agent.py" > "$work/agent.out"
grep -q "answer:" "$work/agent.out" || fail "the agent gave no answer: $(cat "$work/agent.out")"

for i in $(seq 1 180); do
  curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break
  sleep 0.5
done
curl -s -o /dev/null "http://127.0.0.1:$PORT/" || fail "Phoenix did not come up in 90 s"
step "Phoenix up after ~$((i / 2)) s; pushing the session with tapedeck otlp --endpoint"
"$TAPEDECK_BIN" otlp phoenix-demo --store "$work/store" --endpoint "http://127.0.0.1:$PORT"
"$TAPEDECK_BIN" show phoenix-demo --store "$work/store" --json > "$work/show.json"
step "reading the spans back from Phoenix's REST API"
python3 "$ROOT/examples/phoenix_check.py" "http://127.0.0.1:$PORT" "$work/show.json" || fail "spans differ"

# An MCP session recorded with the official SDK (examples/wire.sh made the tape): its
# tools/call spans must reach Phoenix as TOOL children of the execute_tool spans.
MCP_TAPE="$ROOT/tests/tapes/mcp-sdk.jsonl"
step "pushing the MCP tape $MCP_TAPE"
"$TAPEDECK_BIN" otlp "$MCP_TAPE" --endpoint "http://127.0.0.1:$PORT"
"$TAPEDECK_BIN" show "$MCP_TAPE" --json > "$work/show-mcp.json"
python3 "$ROOT/examples/phoenix_check.py" "http://127.0.0.1:$PORT" "$work/show-mcp.json" || fail "MCP spans differ"

step "the live session: every span reached Phoenix, those of the run made while it was down too"
wait "$live" || fail "record --otlp-endpoint failed: $(cat "$work/live.err")"
grep -q "answer:" "$work/live1.out" && grep -q "answer:" "$work/live2.out" \
  || fail "a live run gave no answer: $(cat "$work/live1.out" "$work/live2.out")"
grep -q "each batch is tried once and kept" "$work/live.err" \
  || fail "the first run's spans were not kept: $(cat "$work/live.err")"
grep -q "takes spans again; sending the" "$work/live.err" \
  || fail "the kept spans were not sent once Phoenix was up: $(cat "$work/live.err")"
grep -q ", 0 spans failed" "$work/live.err" || fail "spans were lost: $(cat "$work/live.err")"
grep -E "takes spans again|live OTLP export:" "$work/live.err" | sed 's/^/    /' >&2
"$TAPEDECK_BIN" show phoenix-live --store "$work/live-store" --json > "$work/show-live.json"
python3 "$ROOT/examples/phoenix_check.py" "http://127.0.0.1:$PORT" "$work/show-live.json" || fail "live spans differ"
