#!/usr/bin/env bash
# Proof that tapedeck's web viewer shows what the commands say, in a real browser
# (headless Chromium driven by Selenium, examples/ui_check.py): record the examples'
# sessions, the fault sessions, parallel tool calls, a response full of markup and a
# 10,000-step run; then check every page against `show`, `analyze`, `diff` and
# `cluster`, and a record daemon's viewer updating live.
#
#   TAPEDECK_BIN  the tapedeck binary        (default $CARGO_TARGET_DIR/release/tapedeck,
#                                             CARGO_TARGET_DIR defaulting to ./target)
#   UPSTREAM_BIN  the example upstream       (default $CARGO_TARGET_DIR/release/examples/upstream)
#   PYTHON        a python with examples/requirements.txt installed (default python3)
#   UI_PYTHON     a python with selenium (examples/ui-requirements.txt) (default $PYTHON)
#   CHROMIUM, CHROMEDRIVER   default /usr/bin/chromium, /usr/bin/chromedriver
#   UI_SHOTS      where the screenshots go (default $CARGO_TARGET_DIR/ui-shots)
#   UI_LONG_TURNS turns of the long run, four steps each, a multiple of 25 (default 2500:
#                 10,000 steps)
#   UI_TIMEOUT    seconds allowed to each command run (default 300)
#   UI_KEEP=1     keep the temp work dir (its path is printed) instead of deleting it
#
# Build first: cargo build --release --bin tapedeck --example upstream
# Steps (each check prints one "ok" line on stderr; the first failure stops the run with
# exit 1, saying what differed):
#   1. start the upstream fixture over TLS on a free port
#   2. record: the examples (openai, openai --stream, anthropic stream, curl), every mode
#      of faulty_agent.py, long_agent.py (parallel tool calls), and a response whose JSON
#      holds <script> and <img onerror> payloads; the 10,000-step run is 100 recorded
#      steps repeated (examples/tape_repeat.py) and imported
#   3. what the commands say: show, analyze, cluster and diff --json, per session
#   4. `tapedeck ui --store`: ui_check.py pages (see its doc) through the link it prints
#      (the access rule checked in the browser first; then viewer.html, what --open hands
#      a browser); the token in no log; screenshots in UI_SHOTS
#   5. `tapedeck record` as a daemon: `tapedeck ui` prints its viewer's link, and the
#      viewer under /_tapedeck/ui/ shows new exchanges without a reload (ui_check.py live)
#   6. `tapedeck replay` as a daemon: its viewer lists the session it replays and no other
#      (ui_check.py only)
set -euo pipefail

NAME=ui
TIMEOUT="${UI_TIMEOUT:-300}"
KEEP="${UI_KEEP:-0}"
# shellcheck source=examples/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
UI_PYTHON="$(abs "${UI_PYTHON:-$PYTHON}")"
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
CHROMEDRIVER="${CHROMEDRIVER:-/usr/bin/chromedriver}"
SHOTS="${UI_SHOTS:-$TARGET/ui-shots}"
LONG_TURNS="${UI_LONG_TURNS:-2500}"
EXPECT="$WORK/expect"
mkdir -p "$EXPECT" "$SHOTS"

step "preflight"
preflight_binaries
preflight_python openai anthropic httpx
"$UI_PYTHON" -c 'import selenium' 2>/dev/null \
  || fail "$UI_PYTHON cannot import selenium" \
    "install it: $UI_PYTHON -m pip install -r examples/ui-requirements.txt (or set UI_PYTHON)"
[[ -x $CHROMIUM && -x $CHROMEDRIVER ]] \
  || fail "no Chromium at $CHROMIUM or no chromedriver at $CHROMEDRIVER" \
    "install them: apt-get install chromium chromium-driver (or set CHROMIUM, CHROMEDRIVER)"
ok "tapedeck $TAPEDECK_BIN, $("$CHROMIUM" --version 2>/dev/null | head -n 1), selenium $("$UI_PYTHON" -c 'import selenium; print(selenium.__version__)')"

export OPENAI_API_KEY="sk-ui-not-a-real-key" ANTHROPIC_API_KEY="sk-ant-ui-not-a-real-key"
export OPENAI_MAX_RETRIES=0 ANTHROPIC_MAX_RETRIES=0

# ---------------------------------------------------------------------------------------
step "1. start the upstream fixture over TLS on a free port"
start_upstream
ok "upstream pid $UP_PID listening on $BASE"
export LLM_BASE_URL="$BASE/v1" TOOL_BASE_URL="$BASE" WEATHER_URL="$BASE/weather" \
  ANTHROPIC_BASE_URL="$BASE" BASE_URL="$BASE"

# ---------------------------------------------------------------------------------------
step "2. record the sessions"
# record SESSION CMD...: `tapedeck record --session SESSION -- CMD`, which must exit 0.
record() {
  local s=$1
  shift
  local args=(--session "$s")
  [[ $s == handoff ]] && args=() # its agents name the session through the proxy user
  run "record-$s" "$TAPEDECK_BIN" record "${args[@]}" --upstream-ca "$UP_CA" -- "$@"
  expect_status "record-$s" 0 "tapedeck record -- $*"
}
record e2e-openai "$PYTHON" examples/agent_openai.py
record e2e-openai-stream "$PYTHON" examples/agent_openai.py --stream
record e2e-anthropic-stream "$PYTHON" examples/anthropic_stream.py
record e2e-curl bash examples/curl.sh
for mode in none empty error-ignored retry context burn handoff; do
  s="fault-$mode"
  [[ $mode == handoff ]] && s=handoff
  record "$s" "$PYTHON" examples/faulty_agent.py --fault "$mode"
done
record parallel-tools "$PYTHON" examples/long_agent.py --turns 2
SCRIPT='<script>window.__xss = 1</script>'
IMG='<img src=x onerror="window.__xss = 2">'
BODY="$("$PYTHON" -c 'import json, sys; print(json.dumps({"note": sys.argv[1], "img": sys.argv[2], "list": [sys.argv[1]]}))' "$SCRIPT" "$IMG")"
record xss curl -sS --fail -X POST -H 'content-type: application/json' -H "x-test: $IMG" \
  --data "$BODY" "$BASE/echo"
contains xss "$OUT/record-xss.out" '"note":"<script>window.__xss = 1</script>"' "the echo of the markup"
ok "recorded the examples, 7 fault modes, parallel-tools and xss"
# The long run: 25 turns (100 steps) of long_agent.py recorded into a store of their own,
# exported, repeated into LONG_TURNS turns (examples/tape_repeat.py: steps and times
# follow on) and imported as long-run. Recording all 10,000 exchanges through the debug
# build took 50 s of a CI run; this takes a few. What the viewer is checked on (its
# steps, spans, parallel tool calls, bodies) is a real recording's, copied.
T_LONG=$SECONDS
((LONG_TURNS % 25 == 0)) || fail "UI_LONG_TURNS must be a multiple of 25 (the recorded seed's turns), got $LONG_TURNS"
TAPEDECK_STORE="$WORK/seed-store" record long-seed "$PYTHON" examples/long_agent.py --turns 25
run export-long-seed "$TAPEDECK_BIN" export --store "$WORK/seed-store" long-seed -o "$WORK/long-seed.jsonl"
expect_status export-long-seed 0 "tapedeck export long-seed"
run repeat-long "$PYTHON" examples/tape_repeat.py "$WORK/long-seed.jsonl" "$WORK/long-run.jsonl" \
  "$((LONG_TURNS / 25))" --session long-run
expect_status repeat-long 0 "examples/tape_repeat.py"
run import-long "$TAPEDECK_BIN" import "$WORK/long-run.jsonl"
expect_status import-long 0 "tapedeck import long-run.jsonl"
ok "long-run: 100 recorded steps repeated into $((LONG_TURNS * 4)) and imported in $((SECONDS - T_LONG))s"

# ---------------------------------------------------------------------------------------
step "3. what the commands say about each session"
run sessions "$TAPEDECK_BIN" sessions --json
expect_status sessions 0 "tapedeck sessions --json"
"$PYTHON" -c 'import json, sys; print(json.dumps([s["name"] for s in json.load(open(sys.argv[1]))]))' \
  "$OUT/sessions.out" >"$EXPECT/sessions.json"
mapfile -t SESSIONS < <("$PYTHON" -c 'import json, sys; print("\n".join(json.load(open(sys.argv[1]))))' "$EXPECT/sessions.json")
for s in "${SESSIONS[@]}"; do
  run "show-$s" "$TAPEDECK_BIN" show "$s" --json
  expect_status "show-$s" 0 "tapedeck show $s --json"
  cp "$OUT/show-$s.out" "$EXPECT/show-$s.json"
  run "analyze-$s" "$TAPEDECK_BIN" analyze "$s" --json
  expect_status "analyze-$s" 0 "tapedeck analyze $s --json"
  cp "$OUT/analyze-$s.out" "$EXPECT/analyze-$s.json"
done
run cluster "$TAPEDECK_BIN" cluster --json
expect_status cluster 0 "tapedeck cluster --json"
cp "$OUT/cluster.out" "$EXPECT/cluster.json"
# The last one is the screenshot's.
DIFFS=(e2e-openai:e2e-openai-stream fault-none:fault-retry fault-none:fault-empty)
for pair in "${DIFFS[@]}"; do
  a=${pair%%:*} b=${pair##*:}
  run "diff-$a-$b" "$TAPEDECK_BIN" diff "$a" "$b" --json
  expect_status "diff-$a-$b" 0 "tapedeck diff $a $b --json"
  cp "$OUT/diff-$a-$b.out" "$EXPECT/diff-$a-$b.json"
done
ok "show, analyze --json for ${#SESSIONS[@]} sessions; cluster --json; diff --json for ${#DIFFS[@]} pairs"

# ---------------------------------------------------------------------------------------
# start_bg LABEL CMD...: CMD in the background (killed on exit); its pid in BG.
start_bg() {
  local label=$1
  shift
  # Made here: the background job opens them after the caller may already read them, and
  # a sed of a missing file ends this script (`set -e`; it failed CI's ui stage twice).
  : >"$WORK/$label.out"
  : >"$WORK/$label.err"
  TAPEDECK_LOG="tapedeck=debug" "$@" >"$WORK/$label.out" 2>"$WORK/$label.err" </dev/null &
  BG=$!
  BG_PIDS+=("$BG")
}
# stop_bg PID LABEL: SIGTERM, and it must exit 0 within 30s.
stop_bg() {
  local pid=$1 label=$2 rc
  kill -TERM "$pid"
  for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && { show_tail "$WORK/$label.err"; fail "$label did not stop within 30s of SIGTERM"; }
  set +e
  wait "$pid"
  rc=$?
  set -e
  [[ $rc == 0 ]] || { show_tail "$WORK/$label.err"; fail "$label exited $rc after SIGTERM"; }
}

step "4. tapedeck ui --store: every page in a real browser"
start_bg ui "$TAPEDECK_BIN" ui --listen 127.0.0.1:0
UI_PID=$BG
URL=""
for _ in $(seq 300); do
  URL="$(head -n 1 "$WORK/ui.out" 2>/dev/null || true)"
  [[ -n $URL ]] && break
  kill -0 "$UI_PID" 2>/dev/null || { show_tail "$WORK/ui.err"; fail "tapedeck ui exited before serving"; }
  sleep 0.1
done
[[ $URL == http://127.0.0.1:*/_tapedeck/ui/\?token=* ]] || { show_tail "$WORK/ui.err"; fail "tapedeck ui printed no link (got \"$URL\")"; }
[[ -f $STORE/viewer.html && $(stat -c %a "$STORE/control.token") == 600 && $(stat -c %a "$STORE/viewer.html") == 600 ]] \
  || fail "tapedeck ui holds the store but wrote no 0600 control.token and viewer.html into it"
ok "tapedeck ui serves ${URL%%\?*} (its link carries the token; control.token and viewer.html are 0600)"
DIFF_ARGS=()
for pair in "${DIFFS[@]}"; do DIFF_ARGS+=(--diff "$pair"); done
set +e
timeout --foreground -k 10 "$TIMEOUT" "$UI_PYTHON" examples/ui_check.py pages --url "$URL" --expect "$EXPECT" \
  --shots "$SHOTS" --chromium "$CHROMIUM" --chromedriver "$CHROMEDRIVER" "${DIFF_ARGS[@]}" \
  --opener "$STORE/viewer.html"
rc=$?
set -e
if [[ $rc != 0 ]]; then
  show_tail "$WORK/ui.err" 30
  fail "ui_check.py pages failed (exit $rc)"
fi
BUILT="$(sed -n 's/.*viewer: read session long-run (\([0-9]*\) events) in \([0-9]*\) ms.*/\1 events in \2 ms/p' "$WORK/ui.err" | head -n 1)"
[[ -n $BUILT ]] && printf '       long-run read and built by the server once: %s\n' "$BUILT" >&2
TOKEN="${URL##*token=}"
stop_bg "$UI_PID" ui
grep -qF "$TOKEN" "$WORK/ui.err" && fail "the token is in tapedeck ui's log ($WORK/ui.err)"
[[ -e $STORE/control.token || -e $STORE/viewer.html ]] && fail "tapedeck ui left control.token or viewer.html behind"
ok "ui_check.py pages passed; tapedeck ui stops cleanly on SIGTERM, removes its token, and logged none"

# ---------------------------------------------------------------------------------------
step "5. a record daemon's viewer updates live"
start_bg live "$TAPEDECK_BIN" record --store "$WORK/live-store" --session live --listen 127.0.0.1:0 \
  --upstream-ca "$UP_CA"
LIVE_PID=$BG
# listening LABEL PID MODE: waits for the daemon's "MODE listening on ADDR" line; ADDR.
listening() {
  local label=$1 pid=$2 mode=$3
  ADDR=""
  for _ in $(seq 300); do
    ADDR="$(sed -n "s/.*$mode listening on \([0-9.]*:[0-9]*\).*/\1/p" "$WORK/$label.err" | head -n 1)"
    [[ -n $ADDR ]] && return 0
    kill -0 "$pid" 2>/dev/null || { show_tail "$WORK/$label.err"; fail "tapedeck $mode exited before listening"; }
    sleep 0.1
  done
  show_tail "$WORK/$label.err"
  fail "tapedeck $mode printed no 'listening on' line"
}
# daemon_link LABEL STORE: the link `tapedeck ui` prints for the daemon holding STORE; LINK.
daemon_link() {
  run "$1" "$TAPEDECK_BIN" ui --store "$2"
  expect_status "$1" 0 "tapedeck ui --store $2 (held by a daemon)"
  LINK="$(cat "$OUT/$1.out")"
  [[ $LINK == "http://$ADDR/_tapedeck/ui/?token="* ]] || fail "tapedeck ui printed \"$LINK\", not the daemon's viewer link"
}
listening live "$LIVE_PID" record
daemon_link live-link "$WORK/live-store"
EXCHANGE=(curl -sS --fail --max-time 30 --proxy "http://$ADDR" --cacert "$CERTS/ca.pem" "$BASE/weather?city=Tokyo")
run live-first "${EXCHANGE[@]}"
expect_status live-first 0 "the first exchange through the record daemon"
contains live-first "$OUT/live-first.out" '"city":"Tokyo"' "the first exchange through the record daemon"
set +e
timeout --foreground -k 10 "$TIMEOUT" "$UI_PYTHON" examples/ui_check.py live --url "$LINK" \
  --session live --shots "$SHOTS" --chromium "$CHROMIUM" --chromedriver "$CHROMEDRIVER" --exchange "${EXCHANGE[@]}"
rc=$?
set -e
if [[ $rc != 0 ]]; then
  show_tail "$WORK/live.err" 30
  fail "ui_check.py live failed (exit $rc)"
fi
stop_bg "$LIVE_PID" live
if grep -q 'client connections still open at exit' "$WORK/live.err"; then
  show_tail "$WORK/live.err"
  fail "the open page's live stream held the daemon's stop"
fi
grep -qF "${LINK##*token=}" "$WORK/live.err" && fail "the token is in the record daemon's log"
ok "the record daemon's viewer at http://$ADDR/_tapedeck/ui/ updated live; the daemon stopped cleanly and logged no token"

# ---------------------------------------------------------------------------------------
step "6. a replay daemon's viewer shows the session it replays, and no other"
start_bg replay "$TAPEDECK_BIN" replay --session fault-empty --listen 127.0.0.1:0
REPLAY_PID=$BG
listening replay "$REPLAY_PID" replay
daemon_link replay-link "$STORE"
set +e
timeout --foreground -k 10 "$TIMEOUT" "$UI_PYTHON" examples/ui_check.py only --url "$LINK" \
  --session fault-empty --other fault-none --shots "$SHOTS" --chromium "$CHROMIUM" --chromedriver "$CHROMEDRIVER"
rc=$?
set -e
if [[ $rc != 0 ]]; then
  show_tail "$WORK/replay.err" 30
  fail "ui_check.py only failed (exit $rc)"
fi
stop_bg "$REPLAY_PID" replay
ok "the replay daemon's viewer at http://$ADDR/_tapedeck/ui/ showed fault-empty alone"

printf '       screenshots: %s\n' "$(cd "$SHOTS" && ls -- *.png | tr '\n' ' ')" >&2
printf 'ui: all %d checks passed in %ds\n' "$CHECKS" "$((SECONDS - T0))" >&2
