#!/usr/bin/env bash
# Proof that a fix can be verified against the recorded incident (what-if replay): an
# incident recorded from examples/faulty_agent.py (the weather tool's error passed on as
# data); the agent's prompt fixed; `replay --live llm` sends the LLM calls to the real
# upstream while the tool answers as it did in the incident; `analyze` on the fork finds
# the finding gone, `diff` names the step where the run left the incident's path, and
# `gen-test` of the fork gives a case that passes. Then `--inject` turns a clean run's
# weather tool into a 503 and the fork shows how the agent handles it, and `rerun` sends
# step 1 twenty times to an upstream that picks the wrong tool 30% of the time.
#
#   TAPEDECK_BIN  the tapedeck binary        (default $CARGO_TARGET_DIR/release/tapedeck,
#                                             CARGO_TARGET_DIR defaulting to ./target)
#   UPSTREAM_BIN  the example upstream       (default $CARGO_TARGET_DIR/release/examples/upstream)
#   PYTHON        a python with examples/requirements.txt installed (default python3)
#   WHATIF_TIMEOUT  seconds allowed to each command run (default 60)
#   WHATIF_KEEP=1   keep the temp work dir (its path is printed) instead of deleting it
#
# Build first: cargo build --release --bin tapedeck --example upstream
# Steps (each check prints one "ok" line on stderr; the first failure stops the run):
#   1. start the upstream fixture over TLS on a free port
#   2. record the incident (faulty_agent.py --fault error-ignored); analyze finds
#      tool_error_ignored
#   3. the fix (a system prompt that asks the model to own up to a failed tool) replayed
#      with --live llm: the agent now says the tool failed; the summary line counts
#      served and live calls and says where the run left the incident's path
#   4. sessions shows the fork's parent; analyze on the fork finds nothing; diff names
#      the divergent step; gen-test of the fork passes under tapedeck test
#   5. --inject 'tool:get_weather=status:503' (with --on-miss live) on a clean recording:
#      the fork holds the injected 503 and analyze sees the agent ignore it
#   6. rerun --step 1 --times 20 against an upstream that picks the wrong tool 30% of
#      the time: the rate reported is within 4 standard errors of 30%
set -euo pipefail

NAME=whatif
TIMEOUT="${WHATIF_TIMEOUT:-60}"
KEEP="${WHATIF_KEEP:-0}"
# shellcheck source=examples/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

step "preflight"
preflight_binaries
preflight_python openai httpx
ok "tapedeck $TAPEDECK_BIN, upstream $UPSTREAM_BIN, python $PYTHON"

export OPENAI_API_KEY="sk-whatif-not-a-real-key" OPENAI_MAX_RETRIES=0

# json_get FILE PYTHON_EXPR: evaluates EXPR with `d` the file's JSON, prints the result.
json_get() {
  "$PYTHON" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"
}

# ---------------------------------------------------------------------------------------
step "1. start the upstream fixture over TLS on a free port"
start_upstream
ok "upstream pid $UP_PID listening on $BASE"
export LLM_BASE_URL="$BASE/v1" TOOL_BASE_URL="$BASE"

# ---------------------------------------------------------------------------------------
step "2. record the incident: the weather tool's 500 passed on as data"
run incident "$TAPEDECK_BIN" record --session incident --upstream-ca "$UP_CA" -- \
  "$PYTHON" examples/faulty_agent.py --fault error-ignored
expect_status incident 0 "record -- faulty_agent.py --fault error-ignored"
contains incident "$OUT/incident.out" 'answer: The weather in Paris: {"error"' "the incident's answer"
run analyze-incident "$TAPEDECK_BIN" analyze incident --json
expect_status analyze-incident 0 "analyze incident --json"
contains analyze-incident "$OUT/analyze-incident.out" '"tool_error_ignored"' "analyze incident"
ok "incident recorded; analyze finds tool_error_ignored"

# ---------------------------------------------------------------------------------------
step "3. the fix, replayed with the LLM live and the tool from the incident"
export AGENT_SYSTEM_PROMPT="You are a weather assistant. Use the tools. If a tool fails, say so; never pass its error off as data."
run fixed "$TAPEDECK_BIN" replay --session incident --live llm --upstream-ca "$UP_CA" -- \
  "$PYTHON" examples/faulty_agent.py --fault error-ignored
expect_status fixed 0 "replay --live llm -- faulty_agent.py (fixed prompt)"
contains fixed "$OUT/fixed.out" 'answer: Sorry, I could not get the weather in Paris' "the fixed agent's answer"
contains fixed "$OUT/fixed.out" 'tool: GET /status/500?city=Paris -> 500' "the tool answered as in the incident"
contains fixed "$OUT/fixed.err" 'LIVE: llm' "the banner"
contains fixed "$OUT/fixed.err" 'recorded as incident.fork-1: 1 served from the recording, 2 went live' "the summary line"
contains fixed "$OUT/fixed.err" "it left incident's path at step 1" "the summary line"
unset AGENT_SYSTEM_PROMPT
ok "$(grep -o 'what-if run of .*' "$OUT/fixed.err" | head -n 1)"

# ---------------------------------------------------------------------------------------
step "4. the fork: its parent, its findings, its divergence, its regression case"
run sessions "$TAPEDECK_BIN" sessions
expect_status sessions 0 "sessions"
contains sessions "$OUT/sessions.out" "incident (fork, left it at step 1)" "sessions shows the parent"
ok "sessions: $(grep 'incident.fork-1' "$OUT/sessions.out" | tr -s ' ')"
run analyze-fork "$TAPEDECK_BIN" analyze incident.fork-1 --json
expect_status analyze-fork 0 "analyze incident.fork-1 --json"
if grep -qF '"tool_error_ignored"' "$OUT/analyze-fork.out"; then
  show_tail "$OUT/analyze-fork.out" 40
  fail "analyze still finds tool_error_ignored on the fork"
fi
ok "analyze incident.fork-1: the finding is gone"
run diff-text "$TAPEDECK_BIN" diff incident incident.fork-1
expect_status diff-text 0 "diff incident incident.fork-1"
contains diff-text "$OUT/diff-text.out" "first divergence: step 1 in A, step 1 in B" "diff"
run diff "$TAPEDECK_BIN" diff incident incident.fork-1 --json
expect_status diff 0 "diff incident incident.fork-1 --json"
step_a="$(json_get "$OUT/diff.out" 'd["first_divergence"]["step_a"]')"
[[ $step_a == 1 ]] || { show_tail "$OUT/diff.out" 40; fail "diff: the first divergence is at step $step_a, expected 1"; }
ok "diff: the runs part at step 1 ($(json_get "$OUT/diff.out" 'd["first_divergence"]["reason"]'))"
run gen-test "$TAPEDECK_BIN" gen-test incident.fork-1 --output "$WORK/cases/fixed" \
  --cmd "AGENT_SYSTEM_PROMPT='You are a weather assistant. Use the tools. If a tool fails, say so; never pass its error off as data.' $PYTHON $ROOT/examples/faulty_agent.py --fault error-ignored"
expect_status gen-test 0 "gen-test incident.fork-1"
run test-case "$TAPEDECK_BIN" test "$WORK/cases"
expect_status test-case 0 "tapedeck test of the fork's case"
ok "gen-test of the fork: $(tail -n 1 "$OUT/test-case.out" "$OUT/test-case.err" | grep -m1 passed || echo passed)"

# ---------------------------------------------------------------------------------------
step "5. what if the weather tool had answered 503? (--inject on a clean recording)"
run clean "$TAPEDECK_BIN" record --session clean --upstream-ca "$UP_CA" -- \
  "$PYTHON" examples/faulty_agent.py --fault none
expect_status clean 0 "record -- faulty_agent.py --fault none"
run inject "$TAPEDECK_BIN" replay --session clean --inject 'tool:get_weather=status:503' \
  --on-miss live --fork clean.503 --upstream-ca "$UP_CA" -- \
  "$PYTHON" examples/faulty_agent.py --fault none
expect_status inject 0 "replay --inject 'tool:get_weather=status:503' --on-miss live"
contains inject "$OUT/inject.out" 'tool: GET /weather?city=Paris -> 503' "the injected answer"
contains inject "$OUT/inject.err" '1 injected' "the summary line"
run export-inject "$TAPEDECK_BIN" export clean.503 -o "$WORK/clean.503.jsonl"
expect_status export-inject 0 "export clean.503"
grep -q '"tool:get_weather=status:503"' "$WORK/clean.503.jsonl" \
  || { show_tail "$WORK/clean.503.jsonl"; fail "the fork's tape has no injected mark"; }
run analyze-inject "$TAPEDECK_BIN" analyze clean.503 --json
expect_status analyze-inject 0 "analyze clean.503 --json"
contains analyze-inject "$OUT/analyze-inject.out" '"tool_error_ignored"' "analyze of the injected fork"
ok "the injected 503 is in the fork, marked; analyze sees the agent pass it on as data"

# ---------------------------------------------------------------------------------------
step "6. rerun step 1 twenty times against a model that picks the wrong tool 30% of the time"
UP2_CA="$WORK/upstream2-ca.pem"
# Made here: the background job opens it after this script may already read it (a sed of
# a missing file failed the stage on a slow machine).
: >"$WORK/upstream2.out"
"$UPSTREAM_BIN" --tls --port 0 --ca-out "$UP2_CA" --wrong-tool 0.3 --seed 11 \
  >"$WORK/upstream2.out" 2>"$WORK/upstream2.err" &
BG_PIDS+=("$!")
BASE2=""
for _ in $(seq 300); do
  BASE2="$(sed -n 's/^listening on //p' "$WORK/upstream2.out" | head -n 1)"
  [[ -n $BASE2 ]] && break
  sleep 0.1
done
[[ -n $BASE2 ]] || { show_tail "$WORK/upstream2.err"; fail "the second upstream did not start"; }
run rerun "$TAPEDECK_BIN" rerun incident --step 1 --times 20 --endpoint "$BASE2" --upstream-ca "$UP2_CA"
expect_status rerun 0 "rerun incident --step 1 --times 20"
sed 's/^/       | /' "$OUT/rerun.out" >&2
run rerun-json "$TAPEDECK_BIN" rerun incident --step 1 --times 20 --endpoint "$BASE2" --upstream-ca "$UP2_CA" --json
expect_status rerun-json 0 "rerun --json"
"$PYTHON" - "$OUT/rerun-json.out" <<'EOF' || fail "rerun: the wrong-tool rate is not within 4 standard errors of 30%"
import json, math, sys
r = json.load(open(sys.argv[1]))
n = r["times"]
wrong = n - r["recorded_count"]
se = math.sqrt(0.3 * 0.7 / n)
print(f"  ok   rerun: wrong tool {wrong}/{n} ({wrong / n:.0%}), 30% expected, 4 standard errors = {4 * se:.0%}", file=sys.stderr)
sys.exit(0 if n == 20 and abs(wrong / n - 0.3) <= 4 * se else 1)
EOF
CHECKS=$((CHECKS + 1))

printf '%s: all %d checks passed (%ds)\n' "$NAME" "$CHECKS" "$((SECONDS - T0))" >&2
