#!/usr/bin/env bash
# Proof that tapedeck's failure detectors fire at the right steps: record every mode of
# examples/faulty_agent.py (one small, realistic agent bug each) through `tapedeck record`,
# then check `tapedeck analyze --json` finds exactly the expected signatures, at exactly
# the expected steps, and nothing else; that a clean run has no findings; that
# `analyze --fail-on` exits as it should; that `tapedeck cluster --json` puts every
# fault in a group of its own (two runs of one bug together) and the clean runs together;
# that `analyze --explain` walks a cross-agent cascade back to its origin; that a judge
# (`analyze --judge`) recorded through tapedeck catches the drift and replays offline;
# that `tapedeck issues` tracks the signatures; and that `tapedeck mcp` answers the
# official MCP Python SDK.
#
#   TAPEDECK_BIN  the tapedeck binary        (default $CARGO_TARGET_DIR/release/tapedeck,
#                                             CARGO_TARGET_DIR defaulting to ./target)
#   UPSTREAM_BIN  the example upstream       (default $CARGO_TARGET_DIR/release/examples/upstream)
#   PYTHON        a python with examples/requirements.txt installed (default python3)
#   FAULTS_TIMEOUT  seconds allowed to each command run (default 60)
#   FAULTS_KEEP=1   keep the temp work dir (its path is printed) instead of deleting it
#
# Build first: cargo build --release --bin tapedeck --example upstream
# Steps (each check prints one "ok" line on stderr; the first failure stops the run
# with exit 1, saying what differed, with `tapedeck show` of the session):
#   1. start the upstream fixture over TLS on a free port, get its CA
#   2. record each mode (`--fault none` twice) under `tapedeck record`; each exits 0 and
#      prints its marker line; the two clean runs print the same
#   3. `tapedeck sessions --json`: exactly the expected sessions (handoff's comes from the
#      proxy user name); event kinds and agents in step order, from exported tapes
#   4. `tapedeck analyze SESSION --json`: exactly the expected findings (detector, steps,
#      severity) per session, none on the clean runs
#   5. `tapedeck analyze --fail-on warning|error` exit statuses
#   6. `tapedeck cluster --json`: one group per fault, the clean runs in one group, the
#      two runs of the price tool's soft error in one group, each group's issue status
#   7. `tapedeck analyze cascade --explain 4`: the chain 4 <- 3 <- 2 <- 1 with its values
#   8. the judge: `record -- analyze fault-drift --judge` against the fixture's keyword
#      judge finds goal_drift at step 3 (none on fault-none); the judge's tape replayed
#      with `replay --tape -- analyze --judge` finds it again offline
#   9. `tapedeck issues --json`: the signatures with their counts and statuses
#  10. `tapedeck mcp` driven by the official MCP Python SDK (examples/mcp_check.py)
set -euo pipefail

NAME=faults
TIMEOUT="${FAULTS_TIMEOUT:-60}"
KEEP="${FAULTS_KEEP:-0}"
# shellcheck source=examples/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

step "preflight"
preflight_binaries
preflight_python openai httpx
ok "tapedeck $TAPEDECK_BIN, upstream $UPSTREAM_BIN, python $PYTHON"

# No SDK retries, so the traffic is the same every run.
export OPENAI_API_KEY="sk-faults-not-a-real-key" OPENAI_MAX_RETRIES=0

# show_session SESSION: `tapedeck show` of it and its `analyze --json`, for a failure report.
show_session() {
  local s=$1
  "$TAPEDECK_BIN" show "$s" >"$OUT/show-$s.txt" 2>&1 || true
  "$TAPEDECK_BIN" analyze "$s" --json >"$OUT/analyze-show-$s.json" 2>&1 || true
  printf '       --- tapedeck show %s:\n' "$s" >&2
  sed 's/^/       | /' "$OUT/show-$s.txt" >&2
  printf '       --- tapedeck analyze %s --json:\n' "$s" >&2
  sed 's/^/       | /' "$OUT/analyze-show-$s.json" >&2
}

# ---------------------------------------------------------------------------------------
step "1. start the upstream fixture over TLS on a free port"
start_upstream
ok "upstream pid $UP_PID listening on $BASE, CA $UP_CA"

export LLM_BASE_URL="$BASE/v1" TOOL_BASE_URL="$BASE"

# ---------------------------------------------------------------------------------------
# The runs: label -> fault mode, session, a line the output must contain, event kinds and
# agents in step order, and the findings expected: "detector@steps:severity", space
# separated, empty for none. Why each is expected (steps are the recorded exchanges):
#   none          1 llm (asks get_weather Paris), 2 tool /weather 200, 3 llm answers: clean
#   empty         2 tool /empty-list answers [] and 3 llm consumes "[]" as the tool result
#   error-ignored 2 tool /status/500 answers 500, 3 llm gets the error body as data and
#                 answers "The weather in Paris: {error...}" without acknowledging it
#   retry         2, 3, 4: the same GET /status/503?city=Paris three times, all 503; the
#                 agent gives up without another LLM call, so no error reaches an LLM
#   context       1 gpt-4 at 5,600 of 8,192 input tokens (68%, under the 80% mark); 2 at
#                 7,070 (86%: a warning, < 95%), with max_tokens = what the window has
#                 left (1,122), so its answer (1,462 tokens) ends with finish_reason length
#   burn          1..4: four LLM calls, input 21 -> 54 -> 96 -> 139 tokens, no tool result
#   handoff       1 planner's LLM answer carries "Pariss", 2 the writer's GET
#                 /weather?city=Pariss answers 404: the error is traced back to step 1
#   slow          1 llm, 2 /weather, 3 /slow?ms=1500 (the forecast), 4 /json, 5 llm: step
#                 3 is ~90% of the run's wall time and ~75x its median exchange
#   soft-error    2 /price answers 200 with "parse_error" in the body, 3 the LLM quotes the
#                 guessed price ("EUR 1.299") without a word about it
#   cascade       the same researcher (steps 1-3), then 4 the writer's LLM gets the notes
#                 and writes "just EUR 1.30": the soft error of step 2 crossed from agent
#                 researcher to agent writer at step 3 and ended in step 4's output
#   drift         1 llm, 2 /weather, 3 llm answering a stray message about cheese: no rule
#                 fires; only the judge (step 8) finds goal_drift at step 3
LABELS=(none empty error-ignored retry context burn handoff slow soft-error cascade drift
  none-again)
declare -A MODE=([none]=none [empty]=empty [error-ignored]=error-ignored [retry]=retry
  [context]=context [burn]=burn [handoff]=handoff [slow]=slow [soft-error]=soft-error
  [cascade]=cascade [drift]=drift [none-again]=none)
declare -A SESSION=([none]=fault-none [empty]=fault-empty [error-ignored]=fault-error-ignored
  [retry]=fault-retry [context]=fault-context [burn]=fault-burn [handoff]=handoff
  [slow]=fault-slow [soft-error]=fault-soft-error [cascade]=cascade [drift]=fault-drift
  [none-again]=fault-none-again)
declare -A MARKER=(
  [none]='answer: The weather in Paris: {"city":"Paris","temp_c":18,"conditions":"sunny"}'
  [empty]='answer: The weather in Paris: []'
  [error-ignored]='answer: The weather in Paris: {"error":{"message":"fixture: status 500'
  [retry]='gave up: get_weather failed 3 times (HTTP 503)'
  [context]='turn 2: 7070 prompt tokens of 8192, max_tokens 1122, finish_reason length'
  [burn]='gave up: no FINAL: answer after 4 attempts'
  [handoff]='writer: GET /weather?city=Pariss -> 404'
  [slow]='tool: GET /slow?ms=1500&city=Paris -> 200'
  [soft-error]='researcher: Research notes: the widget costs EUR 1.299'
  [cascade]='writer: Buy it now for just EUR 1.30'
  [drift]='answer: You said: Forget that. Write a limerick about cheese.'
  [none-again]='answer: The weather in Paris: {"city":"Paris","temp_c":18,"conditions":"sunny"}'
)
declare -A KINDS=([none]="llm tool llm" [empty]="llm tool llm" [error-ignored]="llm tool llm"
  [retry]="llm tool tool tool" [context]="llm llm" [burn]="llm llm llm llm"
  [handoff]="llm tool" [slow]="llm tool tool tool llm" [soft-error]="llm tool llm"
  [cascade]="llm tool llm llm" [drift]="llm tool llm" [none-again]="llm tool llm")
declare -A AGENTS=([handoff]="planner writer" [cascade]="researcher researcher researcher writer")
declare -A FINDINGS=(
  [none]=""
  [empty]="empty_tool_result@2,3:warning"
  [error-ignored]="tool_error_ignored@2,3:error"
  [retry]="retry_loop@2,3,4:error"
  [context]="context_pressure@2:warning truncation@2:warning"
  [burn]="token_burn@1,2,3,4:warning"
  [handoff]="cascading_error@1,2:error"
  [slow]="slow_step@3:info"
  [soft-error]="tool_error_ignored@2,3:error"
  [cascade]="tool_error_ignored@2,3:error cascading_error@2,3,4:error"
  [drift]=""
  [none-again]=""
)
# Runs of the same bug, which cluster must put in one group (the others each get their own).
declare -A SAME_BUG=([cascade]=soft-error)

# ---------------------------------------------------------------------------------------
step "2. record each mode of faulty_agent.py under tapedeck record"
for label in "${LABELS[@]}"; do
  session_args=(--session "${SESSION[$label]}")
  # handoff, cascade: no --session; the session comes from the proxy user name of each agent.
  [[ $label == handoff || $label == cascade ]] && session_args=()
  run "$label.record" "$TAPEDECK_BIN" record "${session_args[@]}" --upstream-ca "$UP_CA" -- \
    "$PYTHON" examples/faulty_agent.py --fault "${MODE[$label]}"
  expect_status "$label.record" 0 "$label: tapedeck record -- faulty_agent.py --fault ${MODE[$label]}"
  if ! grep -qF -- "${MARKER[$label]}" "$OUT/$label.record.out"; then
    show_tail "$OUT/$label.record.out" 40
    fail "$label: the agent's output has no line with: ${MARKER[$label]}"
  fi
  ok "$label: recorded as ${SESSION[$label]}, exit 0, prints \"${MARKER[$label]:0:60}\""
done
if ! cmp -s "$OUT/none.record.out" "$OUT/none-again.record.out"; then
  diff -u "$OUT/none.record.out" "$OUT/none-again.record.out" | sed 's/^/       | /' >&2 || true
  fail "the two clean runs printed different output"
fi
ok "the two clean runs printed the same $(wc -l <"$OUT/none.record.out") lines"

# ---------------------------------------------------------------------------------------
step "3. sessions, event kinds and agents"
run sessions "$TAPEDECK_BIN" sessions --json
expect_status sessions 0 "tapedeck sessions --json"
SESSION_ARGS=()
for label in "${LABELS[@]}"; do
  SESSION_ARGS+=("${SESSION[$label]}=$(wc -w <<<"${KINDS[$label]}")")
done
if ! "$PYTHON" - "$OUT/sessions.out" "${SESSION_ARGS[@]}" >"$OUT/sessions.check" 2>&1 <<'EOF'; then
import json, sys
listed = {s["name"]: s["events"] for s in json.load(open(sys.argv[1]))}
want = dict((a.rsplit("=", 1)[0], int(a.rsplit("=", 1)[1])) for a in sys.argv[2:])
bad = [f"{n}: {listed.get(n, 'not listed')} events, expected {w}" for n, w in want.items() if listed.get(n) != w]
bad += [f"{n}: listed ({e} events), not expected" for n, e in listed.items() if n not in want]
print("\n".join(bad))
sys.exit(1 if bad else 0)
EOF
  show_tail "$OUT/sessions.out" 80
  mapfile -t lines <"$OUT/sessions.check"
  fail "tapedeck sessions --json does not list exactly the expected sessions" "${lines[@]}"
fi
ok "tapedeck sessions --json lists exactly the ${#LABELS[@]} sessions, with the expected event counts"

for label in "${LABELS[@]}"; do
  s="${SESSION[$label]}"
  tape="$TAPES/$s.tape"
  run "$label.export" "$TAPEDECK_BIN" export "$s" -o "$tape"
  expect_status "$label.export" 0 "tapedeck export $s"
  got="$("$PYTHON" -c '
import json, sys
events = [json.loads(l) for l in open(sys.argv[1]) if l.strip()][1:]
print(" ".join(e.get("kind", "?") for e in events))
print(" ".join(e.get("agent") or "-" for e in events))
print(" ".join(str(e.get("step")) for e in events))' "$tape" 2>"$OUT/$label.kinds.err")" \
    || { show_tail "$OUT/$label.kinds.err"; fail "$label: cannot read the tape $tape"; }
  kinds="$(sed -n 1p <<<"$got")" agents="$(sed -n 2p <<<"$got")" steps="$(sed -n 3p <<<"$got")"
  want_agents="${AGENTS[$label]:-$(awk '{ for (i = 1; i <= NF; i++) $i = "-"; print }' <<<"${KINDS[$label]}")}"
  want_steps="$(seq -s ' ' 1 "$(wc -w <<<"${KINDS[$label]}")")"
  if [[ $kinds != "${KINDS[$label]}" || $agents != "$want_agents" || $steps != "$want_steps" ]]; then
    show_session "$s"
    fail "$s: events are steps \"$steps\", kinds \"$kinds\", agents \"$agents\"" \
      "expected steps \"$want_steps\", kinds \"${KINDS[$label]}\", agents \"$want_agents\""
  fi
done
ok "event kinds in step order as expected (retry: ${KINDS[retry]}; handoff: ${KINDS[handoff]} by agents ${AGENTS[handoff]})"

# ---------------------------------------------------------------------------------------
step "4. tapedeck analyze --json: the expected findings at the expected steps, nothing else"
for label in "${LABELS[@]}"; do
  s="${SESSION[$label]}"
  run "$label.analyze" "$TAPEDECK_BIN" analyze "$s" --json
  expect_status "$label.analyze" 0 "tapedeck analyze $s --json"
  # shellcheck disable=SC2086 # FINDINGS is a space-separated list
  if ! "$PYTHON" - "$OUT/$label.analyze.out" "$s" ${FINDINGS[$label]} >"$OUT/$label.analyze.check" 2>&1 <<'EOF'; then
import json, sys
doc = json.load(open(sys.argv[1]))
session, want = sys.argv[2], sorted(sys.argv[3:])
bad = []
if doc.get("session") != session:
    bad.append(f"\"session\" is {doc.get('session')!r}, expected {session!r}")
findings = doc.get("findings")
if not isinstance(findings, list):
    bad.append(f"\"findings\" is {findings!r}, not a list")
    findings = []
got = sorted(
    f"{f['detector']}@{','.join(map(str, f['steps']))}:{f['severity']}" for f in findings
)
missing = [w for w in want if w not in got]
extra = [g for g in got if g not in want]
for w in missing:
    bad.append(f"expected, not found: {w}")
for g in extra:
    bad.append(f"found, not expected: {g}")
if not want and findings != []:
    bad.append('a clean run must have "findings": []')
print("\n".join(bad))
sys.exit(1 if bad else 0)
EOF
    show_session "$s"
    mapfile -t lines <"$OUT/$label.analyze.check"
    fail "$s: analyze --json findings differ (expected: ${FINDINGS[$label]:-none})" "${lines[@]}"
  fi
  ok "$s: ${FINDINGS[$label]:-\"findings\": []}"
done

# ---------------------------------------------------------------------------------------
step "5. tapedeck analyze --fail-on"
FAIL_ON_ERROR=()
for label in "${LABELS[@]}"; do
  s="${SESSION[$label]}"
  want_warning=0 want_error=0
  [[ ${FINDINGS[$label]} == *:warning* || ${FINDINGS[$label]} == *:error* ]] && want_warning=1
  [[ ${FINDINGS[$label]} == *:error* ]] && want_error=1 && FAIL_ON_ERROR+=("${SESSION[$label]}")
  run "$label.fail-warning" "$TAPEDECK_BIN" analyze "$s" --fail-on warning
  expect_status "$label.fail-warning" "$want_warning" "tapedeck analyze $s --fail-on warning"
  run "$label.fail-error" "$TAPEDECK_BIN" analyze "$s" --fail-on error
  expect_status "$label.fail-error" "$want_error" "tapedeck analyze $s --fail-on error"
done
ok "--fail-on warning exits 1 on every session with a warning or an error (not the clean ones, nor slow's info); --fail-on error exits 1 only on ${FAIL_ON_ERROR[*]}"

# ---------------------------------------------------------------------------------------
step "6. tapedeck cluster --json"
run cluster "$TAPEDECK_BIN" cluster --json
expect_status cluster 0 "tapedeck cluster --json"
CLUSTER_ARGS=()
for label in "${LABELS[@]}"; do
  # A group's signature names its leading finding: one of the session's detectors.
  dets="$(tr ' ' '\n' <<<"${FINDINGS[$label]}" | sed -n 's/@.*//p' | paste -sd, -)"
  same="${SAME_BUG[$label]:-$label}"
  CLUSTER_ARGS+=("${SESSION[$label]}=${dets}=${SESSION[$same]}")
done
if ! "$PYTHON" - "$OUT/cluster.out" "${CLUSTER_ARGS[@]}" >"$OUT/cluster.check" 2>&1 <<'EOF'; then
import json, sys
groups = json.load(open(sys.argv[1]))
want, bug = {}, {}
for a in sys.argv[2:]:
    name, dets, same = a.split("=")
    want[name] = set(filter(None, dets.split(",")))
    bug[name] = same
clean = sorted(n for n, d in want.items() if not d)
bugs = {bug[n] for n in want if want[n]}
bad = []
seen = []
for g in groups:
    members = g["sessions"]
    seen += members
    det = g["signature"].get("detector")
    if g["count"] != len(members):
        bad.append(f"group {g['signature']}: count {g['count']} but {len(members)} sessions")
    if det is None:
        if sorted(members) != clean:
            bad.append(f"the no-findings group is {sorted(members)}, expected the clean runs {clean}")
        if g.get("status") is not None:
            bad.append(f"the no-findings group has status {g.get('status')!r}, expected null")
        continue
    if len({bug[m] for m in members}) != 1:
        bad.append(f"group {g['signature']} mixes bugs: {sorted(members)}")
    for m in members:
        if det not in want.get(m, set()):
            bad.append(f"{m}: grouped under {det}, expected one of {sorted(want.get(m, []))}")
    # Info findings are read, not tracked as issues; one session is new, two recurring.
    tracked = det != "slow_step"
    status = ("recurring" if len(members) > 1 else "new") if tracked else None
    if g.get("status") != status:
        bad.append(f"group {g['signature']}: status {g.get('status')!r}, expected {status!r}")
if sorted(seen) != sorted(want):
    bad.append(f"clustered sessions {sorted(seen)}, expected {sorted(want)}")
if len(groups) != len(bugs) + 1:
    bad.append(f"{len(groups)} groups, expected {len(bugs) + 1}")
print("\n".join(bad))
sys.exit(1 if bad else 0)
EOF
  show_tail "$OUT/cluster.out" 160
  mapfile -t lines <"$OUT/cluster.check"
  fail "tapedeck cluster --json does not group the sessions as expected" "${lines[@]}"
fi
ok "tapedeck cluster --json: $(grep -c '"signature"' "$OUT/cluster.out") groups, each fault alone but soft-error and cascade together (one bug), the clean runs together; statuses new, recurring"

# ---------------------------------------------------------------------------------------
step "7. tapedeck analyze --explain: the cascade walked back from the writer's answer"
run explain "$TAPEDECK_BIN" analyze cascade --explain 4 --json
expect_status explain 0 "tapedeck analyze cascade --explain 4 --json"
if ! "$PYTHON" - "$OUT/explain.out" >"$OUT/explain.check" 2>&1 <<'EOF'; then
import json, sys
e = json.load(open(sys.argv[1]))
bad = []
steps = [l["step"] for l in e["chain"]]
if steps != [4, 3, 2, 1]:
    bad.append(f"chain steps {steps}, expected [4, 3, 2, 1]")
by = {l["step"]: l for l in e["chain"]}
def inputs(step):
    return {i["from_step"]: i for i in by.get(step, {}).get("inputs", [])}
if "EUR 1.299" not in inputs(4).get(3, {}).get("value", ""):
    bad.append(f"step 4 does not show the notes of step 3 flowing in: {by.get(4)}")
if 2 not in inputs(3):
    bad.append(f"step 3 does not show step 2's answer flowing in: {by.get(3)}")
if "$.parse_error" not in (by.get(2, {}).get("error") or ""):
    bad.append(f"step 2 does not show its soft error: {by.get(2)}")
if inputs(2).get(1, {}).get("value") != "widget":
    bad.append(f"step 2 does not show the argument of step 1's call: {by.get(2)}")
if "just EUR 1.30" not in by.get(4, {}).get("output", ""):
    bad.append(f"step 4's output is not the writer's ad: {by.get(4)}")
print("\n".join(bad))
sys.exit(1 if bad else 0)
EOF
  show_tail "$OUT/explain.out" 80
  mapfile -t lines <"$OUT/explain.check"
  fail "analyze --explain 4 does not walk the cascade back as expected" "${lines[@]}"
fi
run explain-text "$TAPEDECK_BIN" analyze cascade --explain 4
expect_status explain-text 0 "tapedeck analyze cascade --explain 4"
contains explain-text "$OUT/explain-text.out" "← its request holds the text step 3 answered" "analyze --explain 4 (text)"
ok "analyze cascade --explain 4: 4 <- 3 (the notes, \"EUR 1.299\") <- 2 (soft error at \$.parse_error) <- 1 (\"widget\")"

# ---------------------------------------------------------------------------------------
step "8. analyze --judge: recorded through tapedeck, then replayed offline"
JUDGE_STORE="$WORK/judge-store"
JUDGE_URL="$BASE/judge/v1"
# check_findings FILE WANT: the analyze --json in FILE has exactly the findings WANT.
check_findings() {
  "$PYTHON" - "$1" "$2" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
got = sorted(f"{f['detector']}@{','.join(map(str, f['steps']))}:{f['severity']}" for f in doc["findings"])
want = sorted(filter(None, sys.argv[2].split()))
if got != want:
    print(f"findings {got}, expected {want}")
    sys.exit(1)
EOF
}
for s in fault-drift fault-none; do
  want=""
  [[ $s == fault-drift ]] && want="goal_drift@3:warning"
  run "judge-$s" env TAPEDECK_STORE="$JUDGE_STORE" "$TAPEDECK_BIN" record --session "judge-$s" \
    --upstream-ca "$UP_CA" -- "$TAPEDECK_BIN" analyze "$s" --store "$STORE" --judge "$JUDGE_URL" --json
  expect_status "judge-$s" 0 "tapedeck record -- tapedeck analyze $s --judge"
  if ! check_findings "$OUT/judge-$s.out" "$want" >"$OUT/judge-$s.check" 2>&1; then
    show_tail "$OUT/judge-$s.out" 60
    show_tail "$OUT/judge-$s.err" 20
    mapfile -t lines <"$OUT/judge-$s.check"
    fail "$s judged live: unexpected findings" "${lines[@]}"
  fi
done
run judge-export env TAPEDECK_STORE="$JUDGE_STORE" "$TAPEDECK_BIN" export judge-fault-drift -o "$TAPES/judge-drift.tape"
expect_status judge-export 0 "tapedeck export judge-fault-drift"
run judge-replay "$TAPEDECK_BIN" replay --tape "$TAPES/judge-drift.tape" -- \
  "$TAPEDECK_BIN" analyze fault-drift --store "$STORE" --judge "$JUDGE_URL" --json
expect_status judge-replay 0 "tapedeck replay --tape judge-drift.tape -- tapedeck analyze fault-drift --judge"
if ! check_findings "$OUT/judge-replay.out" "goal_drift@3:warning" >"$OUT/judge-replay.check" 2>&1; then
  show_tail "$OUT/judge-replay.out" 60
  mapfile -t lines <"$OUT/judge-replay.check"
  fail "fault-drift judged from the replayed tape: unexpected findings" "${lines[@]}"
fi
contains judge-replay "$OUT/judge-replay.out" "mentions none of the instruction's key words" "the replayed judge's reason"
ok "judge: goal_drift@3 on fault-drift, nothing on fault-none; the judge's $(($(wc -l <"$TAPES/judge-drift.tape") - 1)) calls replayed from its tape give the same finding"

# ---------------------------------------------------------------------------------------
step "9. tapedeck issues --json"
run issues "$TAPEDECK_BIN" issues --json
expect_status issues 0 "tapedeck issues --json"
if ! "$PYTHON" - "$OUT/issues.out" >"$OUT/issues.check" 2>&1 <<'EOF'; then
import json, sys
issues = json.load(open(sys.argv[1]))
bad = []
price = [i for i in issues if i["signature"]["detector"] == "tool_error_ignored" and i["signature"]["tool"] == "get_price"]
if len(price) != 1:
    bad.append(f"one tool_error_ignored issue on get_price expected, got {price}")
    price_id = None
else:
    p = price[0]
    price_id = p["id"]
    if p["status"] != "recurring" or p["count"] != 2 or sorted(p["sessions"]) != ["cascade", "fault-soft-error"]:
        bad.append(f"the get_price issue: {p}")
    if p["signature"]["error"] != "soft error at $.parse_error":
        bad.append(f"the get_price issue's error is {p['signature']['error']!r}")
for i in issues:
    if i["signature"]["detector"] in ("slow_step", "goal_drift"):
        bad.append(f"an info or judge finding is tracked: {i}")
    elif i["id"] != price_id and (i["status"] != "new" or i["count"] != 1):
        bad.append(f"expected new, in one session: {i}")
print("\n".join(bad))
sys.exit(1 if bad else 0)
EOF
  show_tail "$OUT/issues.out" 120
  mapfile -t lines <"$OUT/issues.check"
  fail "tapedeck issues --json does not track the signatures as expected" "${lines[@]}"
fi
ok "tapedeck issues: $(grep -c '"id"' "$OUT/issues.out") issues; the price tool's soft error recurring in fault-soft-error and cascade, the rest new"

# ---------------------------------------------------------------------------------------
step "10. tapedeck mcp, driven by the official MCP Python SDK"
"$PYTHON" -c 'import mcp' 2>/dev/null \
  || fail "$PYTHON cannot import mcp" "install it: $PYTHON -m pip install -r examples/requirements.txt (or set PYTHON)"
run mcp "$PYTHON" examples/mcp_check.py "$TAPEDECK_BIN" "$STORE"
expect_status mcp 0 "examples/mcp_check.py (the MCP Python SDK against tapedeck mcp)"
ok "tapedeck mcp: $(grep -c '^ok ' "$OUT/mcp.out") checks by the MCP SDK client ($(sed -n 's/^sdk //p' "$OUT/mcp.out"))"

printf 'faults: all %d checks passed in %ds\n' "$CHECKS" "$((SECONDS - T0))" >&2
