#!/usr/bin/env bash
# End-to-end proof of the other wires agents use: MCP over Streamable HTTP and the
# Realtime API over WebSocket, and Bedrock's binary event streams, with the official
# clients, recorded through tapedeck, replayed offline, shown, analyzed and exported
# over OTLP.
#
#   TAPEDECK_BIN, UPSTREAM_BIN, PYTHON as for examples/e2e.sh; PYTHON must import mcp,
#   openai, websockets, httpx and boto3 (examples/requirements.txt).
#   WIRE_TIMEOUT  seconds allowed to each command run (default 120)
#   WIRE_KEEP=1   keep the temp work dir
#
# Steps (each check prints one "ok" line on stderr; the first failure stops the run):
#   1. the upstream fixture over TLS (LLM + Realtime WebSocket), a test CA and a FastMCP
#      server over Streamable HTTP behind TLS (SSE answers, and a second one answering JSON)
#   2. examples/mcp_agent.py against each server directly, then under `tapedeck record`:
#      same output; examples/realtime_agent.py likewise (random event ids each run);
#      the Realtime model and examples/bedrock_agent.py (boto3: converse_stream and
#      invoke_model_with_response_stream) asked to repeat the agent's key get it streamed
#      back a few characters a message
#   3. the servers stopped; every session replayed offline: the same output, 0 misses;
#      the Realtime session's messages replayed byte for byte (the client prints a digest
#      of every message it received), at the fast and at the recorded pace; the repeated
#      keys come back as [REDACTED] pieces (botocore checks every frame's CRC-32s)
#   4. show: `tools/call get_weather` (mcp) under `execute_tool get_weather`, the
#      Realtime turns as `chat gpt-realtime` with the tool under the first; analyze: the
#      ignored isError and the empty result at their steps; otlp: the MCP spans' attributes
#   5. changed agents under replay: an extra MCP call and a changed Realtime message both
#      exit 3 (the agents swallow the failure); the WebSocket is closed with 1008
#   6. no secret on disk
set -euo pipefail

NAME=wire
TIMEOUT="${WIRE_TIMEOUT:-120}"
KEEP="${WIRE_KEEP:-0}"
# shellcheck source=examples/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

step "preflight"
preflight_binaries
"$PYTHON" -c 'import mcp, openai, websockets, httpx, uvicorn, boto3' 2>/dev/null \
  || fail "$PYTHON cannot import mcp, openai, websockets, httpx, uvicorn and boto3" \
    "install them: $PYTHON -m pip install -r examples/requirements.txt (or set PYTHON)"
command -v openssl >/dev/null || fail "openssl is not installed"
ok "tapedeck $TAPEDECK_BIN, python $PYTHON (mcp $("$PYTHON" -c 'import importlib.metadata as m; print(m.version("mcp"))'))"

SECRET="sk-wire-SECRET-$$-$RANDOM$RANDOM"
export OPENAI_API_KEY="$SECRET" OPENAI_MAX_RETRIES=0

step "1. upstream, test CA, MCP servers"
start_upstream
ok "upstream at $BASE"
MCP_CA="$WORK/mcp-ca.pem"
(
  cd "$WORK"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout mcp-ca.key -out mcp-ca.pem -days 2 \
    -subj "/CN=tapedeck wire test CA" -addext "basicConstraints=critical,CA:true" \
    -addext "keyUsage=critical,keyCertSign,cRLSign"
  openssl req -newkey rsa:2048 -nodes -keyout mcp.key -out mcp.csr -subj "/CN=localhost"
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:false\nextendedKeyUsage=serverAuth\n' >mcp.ext
  openssl x509 -req -in mcp.csr -CA mcp-ca.pem -CAkey mcp-ca.key -CAcreateserial -out mcp.pem -days 2 -extfile mcp.ext
) >"$WORK/openssl.log" 2>&1 || { show_tail "$WORK/openssl.log"; fail "openssl could not make the test CA"; }
cat "$MCP_CA" "$UP_CA" >"$WORK/direct-ca.pem"

free_port() { "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
MCP_PIDS=()
start_mcp() { # start_mcp LABEL [--json-response]: sets MCP_PORT
  local label=$1
  shift
  MCP_PORT=$(free_port)
  "$PYTHON" "$ROOT/examples/mcp_server.py" --port "$MCP_PORT" --cert "$WORK/mcp.pem" --key "$WORK/mcp.key" "$@" \
    >"$WORK/$label.out" 2>"$WORK/$label.err" &
  MCP_PIDS+=($!)
  BG_PIDS+=($!)
  for _ in $(seq 100); do
    curl -s -o /dev/null --cacert "$MCP_CA" "https://localhost:$MCP_PORT/mcp" && return 0
    sleep 0.1
  done
  show_tail "$WORK/$label.err"
  fail "the MCP server ($label) did not come up"
}
start_mcp mcp-sse
SSE_URL="https://localhost:$MCP_PORT/mcp"
start_mcp mcp-json --json-response
JSON_URL="https://localhost:$MCP_PORT/mcp"
ok "FastMCP servers at $SSE_URL (SSE answers) and $JSON_URL (JSON answers)"

export LLM_BASE_URL="$BASE/v1" WEATHER_URL="$BASE/weather"
export REALTIME_URL="${BASE/https:/wss:}/v1/realtime?model=gpt-realtime"
# direct LABEL ENV=... -- CMD...: the agent alone, trusting both test CAs.
direct() {
  local label=$1
  shift
  run "$label" env SSL_CERT_FILE="$WORK/direct-ca.pem" "$@"
  expect_status "$label" 0 "$label (direct)"
}
record() { # record SESSION CMD...
  local session=$1
  shift
  run "rec-$session" "$TAPEDECK_BIN" record --session "$session" --upstream-ca "$UP_CA" --upstream-ca "$MCP_CA" -- "$@"
  expect_status "rec-$session" 0 "record $session"
}

step "2. direct runs, then recorded"
MCP_AGENT=("$PYTHON" "$ROOT/examples/mcp_agent.py")
RT_AGENT=("$PYTHON" "$ROOT/examples/realtime_agent.py" --event-ids)
direct direct-mcp-sse MCP_URL="$SSE_URL" "${MCP_AGENT[@]}"
direct direct-mcp-json MCP_URL="$JSON_URL" "${MCP_AGENT[@]}"
direct direct-rt "${RT_AGENT[@]}"
contains direct-mcp-sse "$OUT/direct-mcp-sse.out" "isError=True" "the MCP agent's isError call"
MCP_URL="$SSE_URL" record wire-mcp "${MCP_AGENT[@]}"
same_output "record wire-mcp" "$OUT/direct-mcp-sse.out" "$OUT/rec-wire-mcp.out"
MCP_URL="$JSON_URL" record wire-mcp-json "${MCP_AGENT[@]}"
same_output "record wire-mcp-json" "$OUT/direct-mcp-json.out" "$OUT/rec-wire-mcp-json.out"
record wire-rt "${RT_AGENT[@]}"
same_output "record wire-rt" "$OUT/direct-rt.out" "$OUT/rec-wire-rt.out"
ok "the MCP agent (SSE and JSON answers) and the Realtime agent print the same through tapedeck"

# The Realtime model asked to repeat the agent's key streams it back three characters a
# message: the agent gets it while recording; the stored messages must not spell it out,
# so the replayed deltas are [REDACTED] pieces. Outputs have the key masked.
export WIRE_KEY="sk-wire-SECRET-$$-$RANDOM$RANDOM"
RT_ECHO=(env OPENAI_API_KEY="$WIRE_KEY" bash -c '"$0" "$1" --deltas --question "Repeat: $OPENAI_API_KEY" | sed "s/$OPENAI_API_KEY/<the key>/g"' "$PYTHON" "$ROOT/examples/realtime_agent.py")
record wire-rt-echo "${RT_ECHO[@]}"
contains rec-wire-rt-echo "$OUT/rec-wire-rt-echo.out" "deltas: <the key>" "the Realtime agent got the key streamed back while recording"
ok "the Realtime agent asked to repeat its key got it streamed back, three characters a message"

# The same on Bedrock with the AWS SDK: a Bedrock API key (a bearer token) repeated in
# converse-stream's deltas and in invoke-with-response-stream's base64 chunks, binary
# frames each with its CRC-32s.
BR_ECHO=(env BEDROCK_URL="$BASE" AWS_BEARER_TOKEN_BEDROCK="$WIRE_KEY" bash -c '"$0" "$1" | sed "s/$AWS_BEARER_TOKEN_BEDROCK/<the key>/g"' "$PYTHON" "$ROOT/examples/bedrock_agent.py")
record wire-bedrock "${BR_ECHO[@]}"
contains rec-wire-bedrock "$OUT/rec-wire-bedrock.out" "converse: Echo: <the key>." "boto3's converse_stream got the key streamed back while recording"
contains rec-wire-bedrock "$OUT/rec-wire-bedrock.out" "invoke: Echo: <the key>." "boto3's invoke_model_with_response_stream got the key streamed back while recording"
ok "the Bedrock agent (boto3) asked to repeat its key got it streamed back in both event streams"

step "3. servers stopped; replay offline"
for pid in "${MCP_PIDS[@]}" "$UP_PID"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
curl -s -o /dev/null --max-time 5 --cacert "$UP_CA" "$BASE/weather?city=Paris" && fail "the upstream still answers"
replay() { # replay SESSION CMD...
  local session=$1
  shift
  run "rep-$session" "$TAPEDECK_BIN" replay --session "$session" -- "$@"
  expect_status "rep-$session" 0 "replay $session"
  contains "rep-$session" "$OUT/rep-$session.err" "0 misses, every event used" "replay $session summary"
  same_output "replay $session" "$OUT/rec-$session.out" "$OUT/rep-$session.out"
}
MCP_URL="$SSE_URL" replay wire-mcp "${MCP_AGENT[@]}"
MCP_URL="$JSON_URL" replay wire-mcp-json "${MCP_AGENT[@]}"
replay wire-rt "${RT_AGENT[@]}"
run rep-wire-rt-echo "$TAPEDECK_BIN" replay --session wire-rt-echo -- "${RT_ECHO[@]}"
expect_status rep-wire-rt-echo 0 "replay wire-rt-echo"
grep -qxE 'deltas: (\[REDACTED\])+' "$OUT/rep-wire-rt-echo.out" \
  || { show_tail "$OUT/rep-wire-rt-echo.out"; fail "wire-rt-echo: the replayed deltas are not the key's pieces, each [REDACTED]"; }
if grep -rqaF -- "$WIRE_KEY" "$STORE" "$OUT" "$WORK"/*.jsonl 2>/dev/null; then fail "wire-rt-echo: the key reached disk"; fi
ok "wire-rt-echo: the replayed deltas are [REDACTED] pieces; the key is nowhere on disk"
run rep-wire-bedrock "$TAPEDECK_BIN" replay --session wire-bedrock -- "${BR_ECHO[@]}"
expect_status rep-wire-bedrock 0 "replay wire-bedrock (botocore parsed every replayed frame)"
for call in converse invoke; do
  grep -qxE "$call: Echo: (\[REDACTED\])+\." "$OUT/rep-wire-bedrock.out" \
    || { show_tail "$OUT/rep-wire-bedrock.out"; fail "wire-bedrock: the replayed $call text is not the key's pieces, each [REDACTED]"; }
done
if grep -rqaF -- "$WIRE_KEY" "$STORE" "$OUT" "$WORK"/*.jsonl 2>/dev/null; then fail "wire-bedrock: the key reached disk"; fi
ok "wire-bedrock: botocore parsed the replayed event streams (every CRC right) and read [REDACTED] pieces; the key is nowhere on disk"
run rep-wire-rt-paced "$TAPEDECK_BIN" replay --session wire-rt --pace recorded -- "${RT_AGENT[@]}"
expect_status rep-wire-rt-paced 0 "replay wire-rt --pace recorded"
same_output "replay wire-rt --pace recorded" "$OUT/rec-wire-rt.out" "$OUT/rep-wire-rt-paced.out"
contains rep-wire-rt "$OUT/rep-wire-rt.out" "received digest:" "the Realtime agent's digest of the messages it got"
ok "every session replayed offline with the same output (the Realtime messages byte for byte: same digest), 0 misses"
run export-rt "$TAPEDECK_BIN" export wire-rt -o "$WORK/wire-rt.jsonl"
expect_status export-rt 0 "export wire-rt"
"$PYTHON" - "$WORK/wire-rt.jsonl" <<'PY' || fail "the Realtime tape is not as expected"
import json, sys
lines = open(sys.argv[1]).read().splitlines()
assert json.loads(lines[0])["tapedeck_tape"] == 2, lines[0]
ws = [json.loads(l) for l in lines[1:] if '"ws"' in l]
assert len(ws) == 1, len(ws)
msgs = ws[0]["ws"]["messages"]
body = lambda m: m["body"]["json"] if "json" in m["body"] else json.loads(m["body"]["text"])
types = [(m["from"], body(m)["type"]) for m in msgs if m["op"] == "text"]
assert types[0] == ("server", "session.created") and ("server", "response.done") in types, types
assert ("client", "response.create") in types, types
PY
ok "the Realtime session is one event holding $(grep -o '"from"' "$WORK/wire-rt.jsonl" | wc -l) messages (tape format 2)"

step "4. show, analyze, otlp"
run show-mcp "$TAPEDECK_BIN" show wire-mcp
expect_status show-mcp 0 "show wire-mcp"
cat "$OUT/show-mcp.out" >&2
contains show-mcp "$OUT/show-mcp.out" "└─ tools/call get_weather" "show wire-mcp"
contains show-mcp "$OUT/show-mcp.out" "execute_tool get_weather" "show wire-mcp"
contains show-mcp "$OUT/show-mcp.out" "tools/list" "show wire-mcp"
run show-mcp-json "$TAPEDECK_BIN" show wire-mcp --json
"$PYTHON" - "$OUT/show-mcp-json.out" <<'PY' || fail "the MCP spans are not as the conventions say"
import json, sys
t = json.load(open(sys.argv[1]))
spans = {s["span_id"]: s for s in t["spans"]}
calls = [s for s in t["spans"] if s["attributes"].get("mcp.method.name") == "tools/call"]
assert len(calls) == 3, [s["name"] for s in t["spans"]]
for c in calls:
    a = c["attributes"]
    parent = spans[c["parent_span_id"]]
    assert parent["name"] == "execute_tool " + a["gen_ai.tool.name"], (c["name"], parent["name"])
    assert a["gen_ai.operation.name"] == "execute_tool" and a["mcp.session.id"] and a["jsonrpc.request.id"]
    assert a["mcp.protocol.version"].startswith("20"), a
bad = [c for c in calls if c["attributes"].get("error.type") == "tool_error"]
assert [c["name"] for c in bad] == ["tools/call get_weather"], [c["name"] for c in bad]
assert any(s["name"] == "initialize" for s in t["spans"])
PY
ok "show: tools/call {tool} client spans with mcp.* attributes under the execute_tool span that asked; isError is error.type=tool_error"
run analyze-mcp "$TAPEDECK_BIN" analyze wire-mcp --json
"$PYTHON" - "$OUT/analyze-mcp.out" "$OUT/show-mcp-json.out" <<'PY' || fail "analyze did not report the MCP findings at their steps"
import json, sys
f = json.load(open(sys.argv[1]))["findings"]
t = json.load(open(sys.argv[2]))
step = {s["attributes"].get("gen_ai.tool.name"): s["step"] for s in t["spans"] if s["role"] == "mcp"}
last_llm = max(s["step"] for s in t["spans"] if s["role"] == "llm")
got = sorted((x["detector"], tuple(x["steps"])) for x in f)
want = sorted([("tool_error_ignored", (step["get_weather"], last_llm)), ("empty_tool_result", (step["get_alerts"], last_llm))])
assert got == want, (got, want)
PY
ok "analyze: tool_error_ignored and empty_tool_result at the MCP calls' steps"
run show-rt "$TAPEDECK_BIN" show wire-rt
expect_status show-rt 0 "show wire-rt"
cat "$OUT/show-rt.out" >&2
[[ $(grep -c "chat gpt-realtime" "$OUT/show-rt.out") == 2 ]] || fail "show wire-rt: expected two chat gpt-realtime spans"
contains show-rt "$OUT/show-rt.out" "execute_tool get_weather" "show wire-rt"
ok "show: the Realtime session as two chat gpt-realtime spans, the tool call under the first"
run otlp-mcp "$TAPEDECK_BIN" otlp wire-mcp -o "$WORK/mcp-otlp.json"
expect_status otlp-mcp 0 "otlp wire-mcp"
for attr in mcp.method.name mcp.session.id mcp.protocol.version jsonrpc.request.id; do
  grep -qF "\"$attr\"" "$WORK/mcp-otlp.json" || fail "otlp: no $attr attribute"
done
ok "otlp: the MCP spans carry mcp.method.name, mcp.session.id, mcp.protocol.version, jsonrpc.request.id"

step "5. changed agents under replay"
run changed-mcp "$TAPEDECK_BIN" replay --session wire-mcp -- env MCP_URL="$SSE_URL" "${MCP_AGENT[@]}" --extra-call
expect_status changed-mcp 3 "an MCP agent with one more call under replay"
contains changed-mcp "$OUT/changed-mcp.err" "MISS" "the replay log of the changed MCP agent"
run changed-rt "$TAPEDECK_BIN" replay --session wire-rt -- "${RT_AGENT[@]}" --question "What is the weather in Tokyo?"
expect_status changed-rt 3 "a Realtime agent asking another question under replay"
contains changed-rt "$OUT/changed-rt.err" "MISS unrecorded" "the replay log of the changed Realtime agent"
contains changed-rt "$OUT/changed-rt.out" "closed: 1008 tapedeck replay miss (unrecorded)" "the changed Realtime agent's close"
ok "changed agents fail the replay with exit 3: MCP (404 miss), Realtime (closed with 1008 and the miss text)"

step "6. secrets"
hits=$(grep -rlF "$SECRET" "$STORE" "$CERTS" "$WORK"/*.jsonl 2>/dev/null || true)
[[ -z $hits ]] || fail "the API key reached the disk: $hits"
ok "the API key is nowhere in the store or the tapes"

printf '%s: %d checks passed (%ds)\n' "$NAME" "$CHECKS" "$((SECONDS - T0))" >&2
