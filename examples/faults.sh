#!/usr/bin/env bash
# Proof that tapedeck's failure detectors fire at the right steps: record every mode of
# examples/faulty_agent.py (one small, realistic agent bug each) through `tapedeck record`,
# then check `tapedeck analyze --json` finds exactly the expected signatures, at exactly
# the expected steps, and nothing else; that a clean run has no findings; that
# `analyze --fail-on` exits as it should; and that `tapedeck cluster --json` puts every
# fault in a group of its own and the clean runs together.
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
#   6. `tapedeck cluster --json`: one group per fault, the clean runs in one group
set -euo pipefail

NAME=faults
TIMEOUT="${FAULTS_TIMEOUT:-60}"
KEEP="${FAULTS_KEEP:-0}"
# shellcheck source=examples/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

step "preflight"
preflight_binaries
"$PYTHON" -c 'import openai, httpx' 2>/dev/null \
  || fail "$PYTHON cannot import openai and httpx" \
    "install them: $PYTHON -m pip install -r examples/requirements.txt (or set PYTHON)"
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
LABELS=(none empty error-ignored retry context burn handoff none-again)
declare -A MODE=([none]=none [empty]=empty [error-ignored]=error-ignored [retry]=retry
  [context]=context [burn]=burn [handoff]=handoff [none-again]=none)
declare -A SESSION=([none]=fault-none [empty]=fault-empty [error-ignored]=fault-error-ignored
  [retry]=fault-retry [context]=fault-context [burn]=fault-burn [handoff]=handoff
  [none-again]=fault-none-again)
declare -A MARKER=(
  [none]='answer: The weather in Paris: {"city":"Paris","temp_c":18,"conditions":"sunny"}'
  [empty]='answer: The weather in Paris: []'
  [error-ignored]='answer: The weather in Paris: {"error":{"message":"fixture: status 500'
  [retry]='gave up: get_weather failed 3 times (HTTP 503)'
  [context]='turn 2: 7070 prompt tokens of 8192, max_tokens 1122, finish_reason length'
  [burn]='gave up: no FINAL: answer after 4 attempts'
  [handoff]='writer: GET /weather?city=Pariss -> 404'
  [none-again]='answer: The weather in Paris: {"city":"Paris","temp_c":18,"conditions":"sunny"}'
)
declare -A KINDS=([none]="llm tool llm" [empty]="llm tool llm" [error-ignored]="llm tool llm"
  [retry]="llm tool tool tool" [context]="llm llm" [burn]="llm llm llm llm"
  [handoff]="llm tool" [none-again]="llm tool llm")
declare -A AGENTS=([handoff]="planner writer")
declare -A FINDINGS=(
  [none]=""
  [empty]="empty_tool_result@2,3:warning"
  [error-ignored]="tool_error_ignored@2,3:error"
  [retry]="retry_loop@2,3,4:error"
  [context]="context_pressure@2:warning truncation@2:warning"
  [burn]="token_burn@1,2,3,4:warning"
  [handoff]="cascading_error@1,2:error"
  [none-again]=""
)

# ---------------------------------------------------------------------------------------
step "2. record each mode of faulty_agent.py under tapedeck record"
for label in "${LABELS[@]}"; do
  session_args=(--session "${SESSION[$label]}")
  # handoff: no --session; the session comes from the proxy user name of each agent.
  [[ $label == handoff ]] && session_args=()
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
  [[ -n ${FINDINGS[$label]} ]] && want_warning=1
  [[ ${FINDINGS[$label]} == *:error* ]] && want_error=1 && FAIL_ON_ERROR+=("${SESSION[$label]}")
  run "$label.fail-warning" "$TAPEDECK_BIN" analyze "$s" --fail-on warning
  expect_status "$label.fail-warning" "$want_warning" "tapedeck analyze $s --fail-on warning"
  run "$label.fail-error" "$TAPEDECK_BIN" analyze "$s" --fail-on error
  expect_status "$label.fail-error" "$want_error" "tapedeck analyze $s --fail-on error"
done
ok "--fail-on warning exits 1 on every fault session, 0 on the clean ones; --fail-on error exits 1 only on ${FAIL_ON_ERROR[*]}"

# ---------------------------------------------------------------------------------------
step "6. tapedeck cluster --json"
run cluster "$TAPEDECK_BIN" cluster --json
expect_status cluster 0 "tapedeck cluster --json"
CLUSTER_ARGS=()
for label in "${LABELS[@]}"; do
  # A group's signature names its leading finding: one of the session's detectors.
  dets="$(tr ' ' '\n' <<<"${FINDINGS[$label]}" | sed -n 's/@.*//p' | paste -sd, -)"
  CLUSTER_ARGS+=("${SESSION[$label]}=${dets}")
done
if ! "$PYTHON" - "$OUT/cluster.out" "${CLUSTER_ARGS[@]}" >"$OUT/cluster.check" 2>&1 <<'EOF'; then
import json, sys
groups = json.load(open(sys.argv[1]))
want = {}
for a in sys.argv[2:]:
    name, dets = a.rsplit("=", 1)
    want[name] = set(filter(None, dets.split(",")))
clean = sorted(n for n, d in want.items() if not d)
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
        continue
    if len(members) != 1:
        bad.append(f"group {g['signature']} has {sorted(members)}: each fault must be its own group")
    for m in members:
        if det not in want.get(m, set()):
            bad.append(f"{m}: grouped under {det}, expected one of {sorted(want.get(m, []))}")
if sorted(seen) != sorted(want):
    bad.append(f"clustered sessions {sorted(seen)}, expected {sorted(want)}")
if len(groups) != len(want) - len(clean) + 1:
    bad.append(f"{len(groups)} groups, expected {len(want) - len(clean) + 1}")
print("\n".join(bad))
sys.exit(1 if bad else 0)
EOF
  show_tail "$OUT/cluster.out" 120
  mapfile -t lines <"$OUT/cluster.check"
  fail "tapedeck cluster --json does not group the sessions as expected" "${lines[@]}"
fi
ok "tapedeck cluster --json: $(grep -c '"signature"' "$OUT/cluster.out") groups, each fault alone, fault-none and fault-none-again together"

printf 'faults: all %d checks passed in %ds\n' "$CHECKS" "$((SECONDS - T0))" >&2
