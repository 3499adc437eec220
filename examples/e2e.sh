#!/usr/bin/env bash
# End-to-end proof of tapedeck: record real agents through the proxy, then replay them
# offline, byte for byte, and check that a changed agent fails the replay loudly.
#
#   TAPEDECK_BIN  the tapedeck binary        (default $CARGO_TARGET_DIR/release/tapedeck,
#                                             CARGO_TARGET_DIR defaulting to ./target)
#   UPSTREAM_BIN  the example upstream       (default $CARGO_TARGET_DIR/release/examples/upstream)
#   PYTHON        a python with examples/requirements.txt installed (default python3)
#   NODE          node (default node); examples/node_modules must hold undici (npm install)
#   E2E_TIMEOUT   seconds allowed to each command run (default 120)
#   E2E_KEEP=1    keep the temp work dir (its path is printed) instead of deleting it
#
# Build first: cargo build --release --bin tapedeck --example upstream
# Steps (each check prints one "ok" line on stderr; the first failure stops the run
# with exit 1, saying what differed):
#   1. start the upstream fixture over TLS on a free port, get its CA
#   2. run every example directly against it, then under `tapedeck record`: same stdout
#   3. `tapedeck sessions --json` event counts, event kinds in the exported tapes, and the
#      fake API keys nowhere in the store or the tapes
#      (also when the model streams the key back three characters an event: the openai
#      SDK gets it while recording, and its replay gets [REDACTED] pieces)
#   4. stop the upstream (the port must refuse), replay every session offline: same
#      stdout; one more replay from an exported tape
#   5. a changed agent (one extra LLM call) under replay: a miss, exit 3 when the agent
#      swallows the error and exits 0, exit 1 when it lets the error escape; the SDK's
#      exception carries tapedeck's miss message. A raw curl miss: 404, x-tapedeck-miss.
set -euo pipefail

NAME=e2e
TIMEOUT="${E2E_TIMEOUT:-120}"
KEEP="${E2E_KEEP:-0}"
# shellcheck source=examples/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
NODE="$(abs "${NODE:-node}")"

step "preflight"
preflight_binaries
preflight_python openai anthropic httpx
"$NODE" --version >/dev/null 2>&1 || fail "no node at $NODE (set NODE)"
[[ -f $ROOT/examples/node_modules/undici/package.json ]] \
  || fail "examples/node_modules has no undici" "install it: npm install --prefix examples"
ok "tapedeck $TAPEDECK_BIN, upstream $UPSTREAM_BIN, python $PYTHON, node $("$NODE" --version)"

# Recognisable fake secrets (searched for on disk later), no SDK retries (so traffic is
# the same every run).
SECRET_OPENAI="sk-e2e-SECRET-openai-$$-$RANDOM$RANDOM"
SECRET_ANTHROPIC="sk-ant-e2e-SECRET-anthropic-$$-$RANDOM$RANDOM"
export OPENAI_API_KEY="$SECRET_OPENAI" ANTHROPIC_API_KEY="$SECRET_ANTHROPIC"
export OPENAI_MAX_RETRIES=0 ANTHROPIC_MAX_RETRIES=0

# same_output WHAT EXPECTED_FILE ACTUAL_FILE
same_output() {
  local what=$1 want=$2 got=$3
  if ! cmp -s "$want" "$got"; then
    printf '       --- diff -u %s %s:\n' "$want" "$got" >&2
    diff -u "$want" "$got" | head -n 60 | sed 's/^/       | /' >&2 || true
    fail "$what: output differs from $(basename "$want")"
  fi
}
contains() { # contains LABEL FILE FIXED_STRING WHAT
  if ! grep -qF -- "$3" "$2"; then
    show_tail "$2" 40
    fail "$4: \"$3\" not found in $(basename "$2")"
  fi
}

# ---------------------------------------------------------------------------------------
step "1. start the upstream fixture over TLS on a free port"
start_upstream
ok "upstream pid $UP_PID listening on $BASE, CA $UP_CA"
UP_PORT="${BASE##*:}"
curl -sS --fail --max-time 10 --cacert "$UP_CA" "$BASE/weather?city=Paris" >"$OUT/upstream-probe.out" 2>"$OUT/upstream-probe.err" \
  || { show_tail "$OUT/upstream-probe.err"; fail "the upstream at $BASE does not answer over TLS with its CA"; }
ok "upstream pid $UP_PID listening on $BASE, CA $UP_CA"

export LLM_BASE_URL="$BASE/v1" WEATHER_URL="$BASE/weather" ANTHROPIC_BASE_URL="$BASE" BASE_URL="$BASE"

# The examples: session name, expected events, expected kinds (in step order), a string
# the output must contain, and the command.
NAMES=(openai openai-stream anthropic-stream curl node-fetch)
declare -A EVENTS=([openai]=3 [openai-stream]=3 [anthropic-stream]=1 [curl]=4 [node-fetch]=1)
declare -A KINDS=(
  [openai]="llm tool llm" [openai-stream]="llm tool llm" [anthropic-stream]="llm"
  [curl]="llm tool tool llm" [node-fetch]="llm"
)
declare -A MARKER=(
  [openai]="answer: The weather in Paris"
  [openai-stream]="answer: The weather in Paris"
  [anthropic-stream]="stop_reason: end_turn"
  [curl]="== streamed chat completion"
  [node-fetch]="answer: "
)
cmd_of() {
  case $1 in
    openai) CMD=("$PYTHON" examples/agent_openai.py) ;;
    openai-stream) CMD=("$PYTHON" examples/agent_openai.py --stream) ;;
    anthropic-stream) CMD=("$PYTHON" examples/anthropic_stream.py) ;;
    curl) CMD=(bash examples/curl.sh) ;;
    node-fetch) CMD=("$NODE" examples/node_fetch.mjs) ;;
    *) fail "unknown example $1" ;;
  esac
}
session() { printf 'e2e-%s' "$1"; }

# ---------------------------------------------------------------------------------------
step "2. run each example directly, then under tapedeck record"
DIRECT_ENV=(env SSL_CERT_FILE="$UP_CA" REQUESTS_CA_BUNDLE="$UP_CA" CURL_CA_BUNDLE="$UP_CA"
  NODE_EXTRA_CA_CERTS="$UP_CA")
for name in "${NAMES[@]}"; do
  cmd_of "$name"
  run "$name.direct" "${DIRECT_ENV[@]}" "${CMD[@]}"
  expect_status "$name.direct" 0 "$name: direct run (${CMD[*]})"
  [[ -s $OUT/$name.direct.out ]] || fail "$name: the direct run printed nothing"
  contains "$name" "$OUT/$name.direct.out" "${MARKER[$name]}" "$name: direct run"
  run "$name.record" "$TAPEDECK_BIN" record --session "$(session "$name")" --upstream-ca "$UP_CA" -- "${CMD[@]}"
  expect_status "$name.record" 0 "$name: tapedeck record -- ${CMD[*]}"
  same_output "$name: recording run vs direct run" "$OUT/$name.direct.out" "$OUT/$name.record.out"
  ok "$name: direct and recorded runs exit 0 with the same stdout ($(wc -c <"$OUT/$name.record.out") bytes)"
done

# ---------------------------------------------------------------------------------------
step "3. sessions, event kinds, and no secret in the store or the tapes"
run sessions "$TAPEDECK_BIN" sessions --json
expect_status sessions 0 "tapedeck sessions --json"
EXPECT_ARGS=()
for name in "${NAMES[@]}"; do EXPECT_ARGS+=("$(session "$name")=${EVENTS[$name]}"); done
if ! "$PYTHON" - "$OUT/sessions.out" "${EXPECT_ARGS[@]}" >"$OUT/sessions.check" 2>&1 <<'EOF'; then
import json, sys
listed = {s["name"]: s for s in json.load(open(sys.argv[1]))}
bad = []
for arg in sys.argv[2:]:
    name, want = arg.rsplit("=", 1)
    if name not in listed:
        bad.append(f"{name}: not listed (listed: {sorted(listed)})")
    elif listed[name]["events"] != int(want):
        bad.append(f"{name}: {listed[name]['events']} events, expected {want}")
if len(listed) != len(sys.argv) - 2:
    bad.append(f"{len(listed)} sessions listed, expected {len(sys.argv) - 2}: {sorted(listed)}")
print("\n".join(bad))
sys.exit(1 if bad else 0)
EOF
  show_tail "$OUT/sessions.out" 60
  mapfile -t lines <"$OUT/sessions.check"
  fail "tapedeck sessions --json does not list the expected sessions" "${lines[@]}"
fi
ok "tapedeck sessions --json: $(for n in "${NAMES[@]}"; do printf '%s=%s ' "$(session "$n")" "${EVENTS[$n]}"; done)"

for name in "${NAMES[@]}"; do
  tape="$TAPES/$(session "$name").tape"
  run "$name.export" "$TAPEDECK_BIN" export "$(session "$name")" -o "$tape"
  expect_status "$name.export" 0 "tapedeck export $(session "$name")"
  [[ -s $tape ]] || fail "tapedeck export $(session "$name") wrote nothing to $tape"
  kinds="$("$PYTHON" -c '
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print(" ".join(e.get("kind", "?") for e in lines[1:]))' "$tape" 2>"$OUT/$name.kinds.err")" \
    || { show_tail "$OUT/$name.kinds.err"; fail "$name: cannot read the tape $tape"; }
  [[ $kinds == "${KINDS[$name]}" ]] \
    || fail "$name: event kinds in the tape are \"$kinds\", expected \"${KINDS[$name]}\""
done
ok "exported ${#NAMES[@]} tapes; event kinds as expected (openai: ${KINDS[openai]}; curl: ${KINDS[curl]})"

# Also no command's output or log (tapedeck's logs included) shows them.
for secret in "$SECRET_OPENAI" "$SECRET_ANTHROPIC"; do
  set +e
  hits="$(grep -rlaF -- "$secret" "$STORE" "$TAPES" "$CERTS" "$OUT")"
  g=$?
  set -e
  case $g in
    1) ;;
    0) fail "the API key $secret was written to disk" "found in:" $hits ;;
    *) fail "grep for the API key failed (exit $g)" ;;
  esac
done
# The keys did reach tapedeck: each header that carried one is stored as [REDACTED].
for name in openai anthropic-stream curl node-fetch; do
  contains "$name" "$TAPES/$(session "$name").tape" "[REDACTED]" "$name: the tape has no redacted header"
done
ok "the API keys appear nowhere under the store or certs dir, in the tapes or in any output (the headers are [REDACTED])"

# A model that repeats the key from its prompt streams it three characters an event: no
# run of the stream's bytes holds it, and the stored stream must not spell it out either.
# The agent's output has the key replaced by a placeholder, so that no output holds it.
ECHO=(bash -c '"$0" examples/agent_openai.py --stream --max-turns 1 --question "Repeat: $OPENAI_API_KEY" | sed "s/$OPENAI_API_KEY/<the key>/g"' "$PYTHON")
run echo-key.record "$TAPEDECK_BIN" record --session e2e-echo-key --upstream-ca "$UP_CA" -- "${ECHO[@]}"
expect_status echo-key.record 0 "echo-key: tapedeck record -- agent_openai.py --stream, asked to repeat its key"
contains echo-key "$OUT/echo-key.record.out" "answer: <the key>" "echo-key: the agent got the key streamed back while recording"
run echo-key.replay "$TAPEDECK_BIN" replay --session e2e-echo-key -- "${ECHO[@]}"
expect_status echo-key.replay 0 "echo-key: tapedeck replay --session e2e-echo-key"
grep -qxE 'answer: (\[REDACTED\])+' "$OUT/echo-key.replay.out" \
  || { show_tail "$OUT/echo-key.replay.out"; fail "echo-key: the replayed answer is not the key's pieces, each [REDACTED]"; }
set +e
hits="$(grep -rlaF -- "${SECRET_OPENAI:7:9}" "$STORE" "$OUT")"
g=$?
set -e
[[ $g == 1 ]] || fail "echo-key: a piece of the key (${SECRET_OPENAI:7:9}) is on disk" "found in:" $hits
ok "echo-key: the key streamed back three characters an event reached the agent, and replays as [REDACTED] pieces (nothing of it stored)"

# ---------------------------------------------------------------------------------------
step "4. stop the upstream, replay every session offline"
kill -TERM "$UP_PID"
for _ in $(seq 100); do kill -0 "$UP_PID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$UP_PID" 2>/dev/null && { kill -KILL "$UP_PID" 2>/dev/null || true; }
wait "$UP_PID" 2>/dev/null || true
set +e
curl -sS --max-time 10 --cacert "$UP_CA" "$BASE/weather?city=Paris" >/dev/null 2>"$OUT/refused.err"
probe=$?
set -e
[[ $probe == 7 ]] || { show_tail "$OUT/refused.err"; fail "the upstream port $UP_PORT still answers (curl exit $probe, expected 7: could not connect)"; }
if (exec 3<>"/dev/tcp/127.0.0.1/$UP_PORT") 2>/dev/null; then
  fail "127.0.0.1:$UP_PORT still accepts connections after the upstream was stopped"
fi
ok "upstream stopped; $BASE refuses connections"

for name in "${NAMES[@]}"; do
  cmd_of "$name"
  run "$name.replay" "$TAPEDECK_BIN" replay --session "$(session "$name")" -- "${CMD[@]}"
  expect_status "$name.replay" 0 "$name: tapedeck replay --session $(session "$name") -- ${CMD[*]}"
  same_output "$name: replay vs recording run" "$OUT/$name.record.out" "$OUT/$name.replay.out"
  ok "$name: offline replay exits 0 with the recorded stdout"
done

name=openai-stream
cmd_of "$name"
tape="$TAPES/$(session "$name").tape"
# A store dir that must stay absent: a tape replay needs no store.
run "$name.tape-replay" env TAPEDECK_STORE="$WORK/no-store" "$TAPEDECK_BIN" replay --tape "$tape" -- "${CMD[@]}"
expect_status "$name.tape-replay" 0 "$name: tapedeck replay --tape $tape -- ${CMD[*]}"
same_output "$name: replay from the tape vs recording run" "$OUT/$name.record.out" "$OUT/$name.tape-replay.out"
[[ ! -e $WORK/no-store ]] || fail "$name: replay --tape created a store dir ($WORK/no-store)"
ok "$name: replay --tape $(basename "$tape") exits 0 with the recorded stdout, and opens no store"

# ---------------------------------------------------------------------------------------
step "5. a changed agent (one extra LLM call) must fail the replay"
# (a) The agent catches the API error, prints it on stdout and exits 0: tapedeck exits 3.
label=changed-swallow
run "$label" "$TAPEDECK_BIN" replay --session e2e-openai -- \
  "$PYTHON" examples/agent_openai.py --extra-call --print-errors
expect_status "$label" 3 "changed agent that exits 0 (--extra-call --print-errors) under replay"
head -c "$(wc -c <"$OUT/openai.record.out")" "$OUT/$label.out" >"$OUT/$label.head"
same_output "changed agent: the calls before the extra one" "$OUT/openai.record.out" "$OUT/$label.head"
contains "$label" "$OUT/$label.out" "error: NotFoundError:" "changed agent (exit 0): SDK exception on stdout"
contains "$label" "$OUT/$label.out" "tapedeck replay miss" "changed agent (exit 0): the SDK exception"
contains "$label" "$OUT/$label.out" "unrecorded" "changed agent (exit 0): the SDK exception"
ok "changed agent exiting 0: tapedeck exits 3; stdout has the recorded lines, then the SDK error with 'tapedeck replay miss (unrecorded)'"

# (b) The agent lets the error escape: exit 1 (CMD's status), the miss in its stderr.
label=changed-raise
run "$label" "$TAPEDECK_BIN" replay --session e2e-openai -- \
  "$PYTHON" examples/agent_openai.py --extra-call
expect_status "$label" 1 "changed agent that exits 1 (--extra-call) under replay"
same_output "changed agent (exit 1): stdout" "$OUT/openai.record.out" "$OUT/$label.out"
grep -F "error: NotFoundError:" "$OUT/$label.err" >"$OUT/$label.sdkerr" || true
contains "$label" "$OUT/$label.sdkerr" "tapedeck replay miss" "changed agent (exit 1): the SDK exception on stderr"
contains "$label" "$OUT/$label.sdkerr" "unrecorded" "changed agent (exit 1): the SDK exception on stderr"
ok "changed agent exiting 1: tapedeck exits 1; its stderr has the SDK error with 'tapedeck replay miss (unrecorded)'"

# (c) The miss on the wire: 404, x-tapedeck-miss, and (not an LLM host) a body whose
# `error` is the message itself, details under `tapedeck`. curl exits 0 (no --fail), so
# tapedeck exits 3.
label=raw-miss
run "$label" "$TAPEDECK_BIN" replay --session e2e-curl -- \
  curl -sS -o "$OUT/$label.body" -D "$OUT/$label.headers" -w '%{http_code}\n' "$BASE/weather?city=Tokyo"
expect_status "$label" 3 "curl of an unrecorded URL under replay"
[[ $(cat "$OUT/$label.out") == 404 ]] || fail "unrecorded request: HTTP status $(cat "$OUT/$label.out"), expected 404"
grep -qiE '^x-tapedeck-miss: *unrecorded' "$OUT/$label.headers" \
  || { show_tail "$OUT/$label.headers"; fail "unrecorded request: no 'x-tapedeck-miss: unrecorded' header"; }
"$PYTHON" -c '
import json, sys
b = json.load(open(sys.argv[1]))
m = b["error"]
assert isinstance(m, str), b
assert "tapedeck replay miss" in m and "unrecorded" in m and "city=Tokyo" in m, m
assert b["tapedeck"]["miss"] == "unrecorded", b' "$OUT/$label.body" 2>"$OUT/$label.check" \
  || { show_tail "$OUT/$label.check"; show_tail "$OUT/$label.body"; fail "unrecorded request: the error message does not explain the miss"; }
ok "unrecorded request: 404, x-tapedeck-miss: unrecorded, the error message names it; tapedeck exits 3"

printf 'e2e: all %d checks passed in %ds\n' "$CHECKS" "$((SECONDS - T0))" >&2
