#!/usr/bin/env bash
# Every test of tapedeck, from a fresh checkout: the one command to run (CI runs it via
# .ci/run).
#
#   scripts/test.sh            all stages, in order
#   scripts/test.sh STAGE...   only these (e.g. `scripts/test.sh e2e`)
#
# Stages: setup-python setup-node setup-ui fmt clippy test build clients e2e wire faults whatif ui phoenix fuzz
#   setup-python   a venv in target/e2e-venv with examples/requirements.txt (skipped
#                  when it is already there for the same requirements)
#   setup-node     examples/node_modules via npm install (skipped when up to date)
#   setup-ui       Debian's chromium and chromium-driver (apt-get, when missing and root),
#                  and a venv in target/ui-venv with examples/ui-requirements.txt
#                  (selenium); skipped, with the reason, when Chromium cannot be had
#   fmt            cargo fmt --check
#   clippy         clippy's lints with -D warnings over every target, compiled as the debug
#                  build the test and build stages then use (see stage_clippy);
#                  `cargo clippy --workspace --all-targets -- -D warnings` without clippy-driver
#   test           cargo nextest run --workspace --no-fail-fast and cargo test --doc when
#                  cargo-nextest is installed, cargo test --workspace --no-fail-fast
#                  otherwise (every crate: unit, integration and doc tests; debug)
#   build          cargo build --bin tapedeck --example upstream (debug: the test stage
#                  has built them already; a release build would add minutes to CI and
#                  prove nothing more about behaviour)
#   e2e            examples/e2e.sh on those binaries
#   wire           examples/wire.sh: MCP over Streamable HTTP (the official `mcp` SDK,
#                  FastMCP behind TLS) and the Realtime API over WebSocket (`websockets`),
#                  recorded, replayed offline, shown, analyzed, exported
#   faults         examples/faults.sh: examples/faulty_agent.py's bugs recorded, and
#                  `analyze` must find each at the expected steps (and nothing else)
#   whatif         examples/whatif.sh: an incident's fix verified with `replay --live llm`
#                  (the fork's finding gone, its divergence, its regression case), an
#                  injected 503, and `rerun` against a model that picks the wrong tool 30%
#   clients        examples/clients.sh: real clients (httpx HTTP/2 and HTTP/1.1, Node
#                  fetch, a parallel-tool-call agent, npm install from a local verdaccio
#                  by name and by address,
#                  pip install from a local pypiserver) recorded once and replayed offline
#                  REPLAYS times (default 3): no false misses, identical results; a
#                  reordered sequential agent still fails; zero-byte bodies; multipart
#                  uploads with a fresh boundary per request (requests, httpx, the
#                  openai SDK's audio.transcriptions); workers whose identical
#                  GET /newid are answered in another order (twin-ids); every client
#                  trusts tapedeck under `record -- CMD` with the user's own CA settings.
#                  Its venv, verdaccio and built packages are cached in target/clients.
#                  When end-to-end stages come after it, it runs in the background beside
#                  them (see BACKGROUND below); its output is printed when it ends
#   ui             examples/ui.sh: the web viewer in headless Chromium, every page checked
#                  against show/analyze/diff/cluster, live updates from a record daemon,
#                  markup in bodies shown as text; screenshots in target/ui-shots
#   phoenix        examples/phoenix.sh: a recorded run pushed over OTLP to a real Arize
#                  Phoenix (pinned, installed into target/phoenix-venv) and read back; a
#                  live export begun while Phoenix was down reaches it whole once it is up
#   fuzz           scripts/fuzz.sh: every fuzz target for FUZZ_SECONDS (default 30), two
#                  at a time; fails on any crash. Needs the nightly toolchain; installs
#                  cargo-fuzz (`cargo install cargo-fuzz --locked`) when it is missing.
#                  Run after other stages, it starts with the run in the background at
#                  nice 19 (FUZZ_EARLY=0: in its turn instead); see start_fuzz_early
#
# A failing stage does not stop the others: a stage whose prerequisite failed or was
# skipped is skipped, and a stage that exits 77 was skipped for the reason it printed.
# The run ends with a table of every stage, its time and result, and exits 1 if any
# failed, each failed stage's last FAIL_TAIL (default 40) lines repeated after the table
# (every stage's output is also in $CARGO_TARGET_DIR/stage-NAME.log). FAIL_FAST=1 stops
# at the first failure. TERM or Ctrl-C stops the running stage and everything it started
# (its process group), and the run exits 143 or 130.
# Env: CARGO_TARGET_DIR (default ./target), PYTHON_FOR_VENV (default python3),
# E2E_VENV (default target/e2e-venv), FUZZ_SECONDS (default 30), TAPEDECK_PRUNE (1: delete
# what no later stage reads as the run goes; see prune_after).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
case $CARGO_TARGET_DIR in /*) ;; *) CARGO_TARGET_DIR="$ROOT/$CARGO_TARGET_DIR" ;; esac
VENV="${E2E_VENV:-$ROOT/target/e2e-venv}"
PYTHON_FOR_VENV="${PYTHON_FOR_VENV:-python3}"
FAIL_FAST="${FAIL_FAST:-0}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

ALL_STAGES=(setup-python setup-node setup-ui fmt clippy test build clients e2e wire faults whatif ui phoenix fuzz)
UI_VENV="$ROOT/target/ui-venv"
SKIP=77
if (($#)); then
  STAGES=("$@")
  for s in "${STAGES[@]}"; do
    [[ " ${ALL_STAGES[*]} " == *" $s "* ]] || { echo "test.sh: unknown stage '$s' (stages: ${ALL_STAGES[*]})" >&2; exit 2; }
  done
else
  STAGES=("${ALL_STAGES[@]}")
fi

step() { printf '\n==> %s\n' "$*" >&2; }
now() { printf '%s' "${EPOCHREALTIME/,/.}"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
sha() { sha256sum "$@" | sha256sum | cut -c1-16; }

# --- stages ------------------------------------------------------------------------------
# shellcheck source=scripts/pip.sh
source "$ROOT/scripts/pip.sh"

stage_setup-python() {
  local stamp="$VENV/.tapedeck-requirements" want
  want="$(sha examples/requirements.txt)"
  # find_spec, not import: importing openai takes seconds.
  if [[ -x $VENV/bin/python && -f $stamp && $(cat "$stamp") == "$want" ]] \
    && "$VENV/bin/python" -c 'import importlib.util as u, sys
sys.exit(any(u.find_spec(m) is None for m in ("openai", "anthropic", "httpx", "mcp", "websockets", "boto3")))' 2>/dev/null; then
    echo "venv $VENV is up to date" >&2
    return 0
  fi
  if [[ ! -x $VENV/bin/python ]]; then
    echo "creating $VENV with $("$PYTHON_FOR_VENV" --version 2>&1)" >&2
    rm -rf "$VENV"
    "$PYTHON_FOR_VENV" -m venv "$VENV"
  fi
  pip_install "$VENV/bin/python" -r examples/requirements.txt
  "$VENV/bin/python" -c 'import openai, anthropic, httpx, mcp, websockets, boto3'
  echo "$want" >"$stamp"
}

stage_setup-node() {
  local stamp="examples/node_modules/.tapedeck-package" want
  want="$(sha examples/package.json)"
  if [[ -f examples/node_modules/undici/package.json && -f $stamp && $(cat "$stamp") == "$want" ]]; then
    echo "examples/node_modules is up to date" >&2
    return 0
  fi
  npm install --prefix examples --no-audit --no-fund --loglevel=error
  [[ -f examples/node_modules/undici/package.json ]]
  echo "$want" >"$stamp"
}

stage_setup-ui() {
  if ! [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]]; then
    if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null; then
      echo "setup-ui: skipped: Chromium is not installed (/usr/bin/chromium, /usr/bin/chromedriver) and" \
        "this is not root with apt-get; install Debian's chromium and chromium-driver to run the ui stage" >&2
      return $SKIP
    fi
    echo "installing Debian's chromium and chromium-driver" >&2
    if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }; then
      echo "setup-ui: skipped: apt-get could not install chromium and chromium-driver" >&2
      return $SKIP
    fi
  fi
  local stamp="$UI_VENV/.tapedeck-requirements" want
  want="$(sha examples/ui-requirements.txt)"
  if [[ -x $UI_VENV/bin/python && -f $stamp && $(cat "$stamp") == "$want" ]]; then
    echo "venv $UI_VENV is up to date" >&2
    return 0
  fi
  [[ -x $UI_VENV/bin/python ]] || "$PYTHON_FOR_VENV" -m venv "$UI_VENV"
  pip_install "$UI_VENV/bin/python" -r examples/ui-requirements.txt
  "$UI_VENV/bin/python" -c 'import selenium'
  echo "$want" >"$stamp"
}

stage_fmt() { cargo fmt --all -- --check --color never; }
# The lints and the debug build in one compile: clippy-driver as the workspace's rustc
# wrapper with `-D warnings` (what `cargo clippy -- -D warnings` sets up for `cargo
# check`), over every target (lib, bins, tests, examples, benches) of the debug build.
# clippy-driver is rustc with clippy's lints: it compiles as it lints, and the test and
# build stages find everything built. `cargo clippy` built every dependency a second time
# (metadata only) and ran the front end over the workspace twice: 134 s of CPU on this
# 2-core machine, against about 2 s more for the lint passes in the debug build. The test
# and build stages build the same way only when the clippy stage passed in this run
# (cargo counts the wrapper in what it has built): after a lint error the tests still run,
# built plainly. TAPEDECK_LINT_BUILD=0 (or no clippy-driver): `cargo clippy` as before.
CLIPPY_DRIVER="$(rustup which clippy-driver 2>/dev/null || command -v clippy-driver || true)"
lint_build() { [[ -n $CLIPPY_DRIVER && ${TAPEDECK_LINT_BUILD:-1} == 1 ]]; }
lint_build_env() {
  export RUSTC_WORKSPACE_WRAPPER="$CLIPPY_DRIVER" CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
}
stage_clippy() {
  if ! lint_build; then
    cargo clippy --workspace --all-targets -- -D warnings
    return
  fi
  lint_build_env
  # What the test stage builds (examples as programs, not test harnesses), and the benches.
  cargo test --workspace --no-run
  cargo test --workspace --benches --no-run
}
# The test and build stages: the clippy stage's build when it passed in this run.
after_clippy_env() { if lint_build && [[ ${RESULT[clippy]:-} == ok ]]; then lint_build_env; fi; }
# cargo-nextest when it is installed (one process per test, every binary's tests sharing
# the machine's threads, the heavy ones of tests/limits.rs first: .config/nextest.toml),
# then the doc tests, which nextest does not run; `cargo test` otherwise
# (TAPEDECK_NEXTEST=0 asks for it).
stage_test() {
  after_clippy_env
  if [[ ${TAPEDECK_NEXTEST:-1} != 0 ]] && cargo nextest --version >/dev/null 2>&1; then
    local rc=0
    cargo nextest run --workspace --no-fail-fast || rc=$?
    cargo test --workspace --doc || rc=$?
    return "$rc"
  else
    echo "test: cargo test (cargo-nextest is not installed, or TAPEDECK_NEXTEST=0)" >&2
    cargo test --workspace --no-fail-fast
  fi
}
stage_build() {
  after_clippy_env
  cargo build --bin tapedeck --example upstream
}
stage_e2e() {
  TAPEDECK_BIN="$CARGO_TARGET_DIR/debug/tapedeck" \
    UPSTREAM_BIN="$CARGO_TARGET_DIR/debug/examples/upstream" \
    PYTHON="$VENV/bin/python" \
    bash examples/e2e.sh
}
stage_wire() {
  TAPEDECK_BIN="$CARGO_TARGET_DIR/debug/tapedeck" \
    UPSTREAM_BIN="$CARGO_TARGET_DIR/debug/examples/upstream" \
    PYTHON="$VENV/bin/python" \
    bash examples/wire.sh
}
stage_faults() {
  TAPEDECK_BIN="$CARGO_TARGET_DIR/debug/tapedeck" \
    UPSTREAM_BIN="$CARGO_TARGET_DIR/debug/examples/upstream" \
    PYTHON="$VENV/bin/python" \
    bash examples/faults.sh
}

stage_whatif() {
  TAPEDECK_BIN="$CARGO_TARGET_DIR/debug/tapedeck" \
    UPSTREAM_BIN="$CARGO_TARGET_DIR/debug/examples/upstream" \
    PYTHON="$VENV/bin/python" \
    bash examples/whatif.sh
}

stage_clients() {
  TAPEDECK_BIN="$CARGO_TARGET_DIR/debug/tapedeck" \
    UPSTREAM_BIN="$CARGO_TARGET_DIR/debug/examples/upstream" \
    PYTHON_FOR_VENV="$PYTHON_FOR_VENV" \
    bash examples/clients.sh
}

stage_ui() {
  if ! [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver && -x $UI_VENV/bin/python ]]; then
    echo "ui: skipped: no Chromium, chromedriver or $UI_VENV (run the setup-ui stage)" >&2
    return $SKIP
  fi
  TAPEDECK_BIN="$CARGO_TARGET_DIR/debug/tapedeck" \
    UPSTREAM_BIN="$CARGO_TARGET_DIR/debug/examples/upstream" \
    PYTHON="$VENV/bin/python" \
    UI_PYTHON="$UI_VENV/bin/python" \
    UI_SHOTS="$CARGO_TARGET_DIR/ui-shots" \
    bash examples/ui.sh
}

stage_phoenix() {
  TAPEDECK_BIN="$CARGO_TARGET_DIR/debug/tapedeck" \
    UPSTREAM_BIN="$CARGO_TARGET_DIR/debug/examples/upstream" \
    bash examples/phoenix.sh
}

stage_fuzz() {
  if [[ -z ${FUZZ_BG_PID:-} ]]; then
    FUZZ_JOBS="${FUZZ_JOBS:-2}" scripts/fuzz.sh "${FUZZ_SECONDS:-30}"
    return
  fi
  echo "fuzz: started in the background at the run's start (nice 19); waiting for it" >&2
  # It writes its status before it ends: once it has ended, the status is there or lost.
  while [[ ! -s $FUZZ_BG_RC ]] && kill -0 "$FUZZ_BG_PID" 2>/dev/null; do sleep 1; done
  cat "$FUZZ_BG_LOG" >&2
  if [[ ! -s $FUZZ_BG_RC ]]; then
    echo "fuzz: the background run (pid $FUZZ_BG_PID) ended without an exit status" >&2
    return 1
  fi
  return "$(cat "$FUZZ_BG_RC")"
}

# The fuzz stage is CPU work that needs nothing from the other stages (its own package,
# toolchain and build directory), while the end-to-end stages leave about one of two
# cores idle (Python start-up, servers waiting on each other; measured 45 % busy). When
# fuzz runs after other stages, it starts with the run, building and then fuzzing at
# nice 19: it takes only what the other stages leave, and their timings stay theirs. Its
# stage then waits for it and prints its log; its table counts the runs each target made.
start_fuzz_early() {
  [[ ${STAGES[-1]} == fuzz && ${#STAGES[@]} -gt 1 && ${FUZZ_EARLY:-1} == 1 ]] || return 0
  FUZZ_BG_LOG="$CARGO_TARGET_DIR/fuzz-stage.log" FUZZ_BG_RC="$CARGO_TARGET_DIR/fuzz-stage.rc"
  mkdir -p "$CARGO_TARGET_DIR"
  rm -f "$FUZZ_BG_RC"
  # setsid: its own process group, so that an interrupted or failed-fast run stops it
  # whole. A new session is also a new scheduler autogroup, and autogroups share the CPU
  # evenly whatever their processes' nice (clippy took 272 s instead of 120 beside it):
  # the autogroup's own nice is set to 19 too.
  # Starved of CPU for a while, one input can take many seconds of wall time (27 s seen,
  # 0.07 s alone): libFuzzer's timeout is wall time, so a hang is 300 s here, not 30.
  FUZZ_JOBS="${FUZZ_JOBS:-2}" FUZZ_NICE=19 FUZZ_TIMEOUT="${FUZZ_TIMEOUT:-300}" setsid bash -c \
    '{ echo 19 >/proc/self/autogroup; } 2>/dev/null
     nice -n 19 scripts/fuzz.sh "$1" >"$2" 2>&1; echo $? >"$3"' \
    fuzz "${FUZZ_SECONDS:-30}" "$FUZZ_BG_LOG" "$FUZZ_BG_RC" &
  FUZZ_BG_PID=$!
  trap 'kill -- -"$FUZZ_BG_PID" 2>/dev/null || true' EXIT
  step "fuzz: started in the background (pid $FUZZ_BG_PID, log $FUZZ_BG_LOG)"
}

# What each stage needs to have passed (when it was run in this invocation).
declare -A NEEDS=([e2e]="setup-python setup-node build" [wire]="setup-python build" [faults]="setup-python build" [whatif]="setup-python build"
  [clients]="setup-node build" [ui]="setup-python setup-ui build" [phoenix]="build")

# TAPEDECK_PRUNE=1 (.ci/run sets it: its checkout is thrown away after the run): whatever a
# stage leaves that no later stage of this run reads is deleted when it ends, so the run's
# disk use peaks near 3 GB rather than 8 (a CI machine once ran out of space in the fuzz
# build). What goes: the clients' venv and registries after clients, Phoenix's venv after
# phoenix, and the debug build and the venvs once only fuzz (which builds apart) is left.
prune_after() {
  [[ ${TAPEDECK_PRUNE:-0} == 1 ]] || return 0
  local done_stage=$1 later=" ${*:2} " gone=() r
  case $done_stage in
    clients) gone+=("$ROOT/target/clients") ;;
    phoenix) gone+=("$ROOT/target/phoenix-venv") ;;
  esac
  if [[ $later == "  " || $later == " fuzz " ]]; then
    gone+=("$CARGO_TARGET_DIR/debug" "$VENV" "$UI_VENV" "$ROOT/target/clients" "$ROOT/target/phoenix-venv"
      "$ROOT/target/uv-cache" "$ROOT/target/uv-venv") # never a UV_CACHE_DIR of the user's
  fi
  for r in "${gone[@]}"; do
    [[ -e $r ]] || continue
    echo "prune: $r ($(du -sh "$r" 2>/dev/null | cut -f1)); no later stage reads it" >&2
    rm -rf "$r"
  done
}

# A stage runs in the background, in a process group of its own, while the script waits
# for it: bash runs a trap only once the foreground command it waits on has ended, so a
# TERM sent to this script alone (a CI runner cancelling the job) waited for the whole
# stage, and without a trap it left the stage running with no one to wait for it. Now
# the stage's group is sent TERM (KILL 5 s later if any of it is left; the example
# scripts stop their servers on TERM), the background fuzz run is stopped (the EXIT
# trap), and the script exits 128+N. A group, not a list of child processes: a stage
# starts new processes while a list is being made (nextest stops at once on Ctrl-C, and
# its stage went on to the doc tests).
STAGE_PID=""
group_alive() { ps -e -o pgid=,stat= | awk -v g="$1" '$1 == g && $2 !~ /^Z/ { n++ } END { exit !n }'; }
# stop_group PGID LABEL SIGNAME: TERM to a live group, KILL 5 s later if any of it is left.
stop_group() {
  local i
  group_alive "$1" || return 0
  printf '\n==> %s: stopped by SIG%s\n' "$2" "$3" >&2
  kill -TERM -- -"$1" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    group_alive "$1" || break
    sleep 0.1
  done
  kill -KILL -- -"$1" 2>/dev/null || true
}
stop_stage() {
  local sig=$1 name=$2 b
  [[ -n $STAGE_PID ]] && stop_group "$STAGE_PID" "${s:-stage}" "$name"
  for b in "${!BG_PID[@]}"; do
    stop_group "${BG_PID[$b]}" "$b (in the background)" "$name"
  done
  exit $((128 + sig))
}
trap 'stop_stage 2 INT' INT
trap 'stop_stage 15 TERM' TERM

# BACKGROUND: stages that run beside the end-to-end stages after them instead of before
# them. Those stages keep the machine about half busy (Python and Node starting, servers
# waiting on each other), and `clients` is the longest of them (295 s of a 1,231 s run,
# a third of it installing its registries): started as soon as `build` has passed, it
# runs in a process group of its own with its output in $CARGO_TARGET_DIR/stage-NAME.log,
# printed with its result once it has ended; its time is its own wall time. It is waited
# for before any stage that needs it, before the debug build is pruned (only `fuzz`
# left), and before the summary. Every stage still uses free ports and a work dir of its
# own. TAPEDECK_SERIAL=1 runs every stage in its turn.
BACKGROUND=" clients "
declare -A BG_PID=() BG_T=() BG_LOG=()
start_background() {
  local b=$1
  BG_LOG[$b]="$CARGO_TARGET_DIR/stage-$b.log"
  BG_T[$b]="$(now)"
  mkdir -p "$CARGO_TARGET_DIR"
  rm -f "${BG_LOG[$b]}.end"
  set -m
  ( (set -e; "stage_$b"); rc=$?; now >"${BG_LOG[$b]}.end"; exit "$rc") >"${BG_LOG[$b]}" 2>&1 &
  BG_PID[$b]=$!
  set +m
  step "$b: started in the background (pid ${BG_PID[$b]}, log ${BG_LOG[$b]}); its output follows when it ends"
}
# reap_background [STAGE...]: waits for the background stages (the named ones, or all),
# prints each one's output and result; $REST names the stages still to run (for pruning).
reap_background() {
  local b rc names=("$@")
  ((${#names[@]})) || names=("${!BG_PID[@]}")
  for b in "${names[@]}"; do
    [[ -n ${BG_PID[$b]:-} ]] || continue
    rc=0
    wait "${BG_PID[$b]}" || rc=$?
    unset "BG_PID[$b]"
    step "$b (ran in the background; its output:)"
    cat "${BG_LOG[$b]}" >&2
    TIME[$b]="$(elapsed "${BG_T[$b]}" "$(cat "${BG_LOG[$b]}.end" 2>/dev/null || now)")"
    record_result "$b" "$rc"
    # shellcheck disable=SC2086
    prune_after "$b" $REST
  done
}
record_result() {
  local st=$1 rc=$2
  if ((rc == 0)); then
    RESULT[$st]=ok
    printf '==> %s: ok (%ss)\n' "$st" "${TIME[$st]}" >&2
  elif ((rc == SKIP)); then
    RESULT[$st]=skipped
    printf '==> %s: skipped (%ss)\n' "$st" "${TIME[$st]}" >&2
  else
    RESULT[$st]=FAIL
    FAILED=1
    printf '==> %s: FAILED, exit %d (%ss)\n' "$st" "$rc" "${TIME[$st]}" >&2
  fi
}

# --- run ---------------------------------------------------------------------------------
declare -A RESULT=() TIME=()
T_ALL="$(now)"
mkdir -p "$CARGO_TARGET_DIR"
start_fuzz_early
FAILED=0
for ((si = 0; si < ${#STAGES[@]}; si++)); do
  s=${STAGES[si]}
  REST="${STAGES[*]:si+1}"
  for dep in ${NEEDS[$s]:-}; do
    [[ -n ${BG_PID[$dep]:-} ]] && reap_background "$dep"
  done
  blocked=""
  for dep in ${NEEDS[$s]:-}; do
    if [[ ${RESULT[$dep]:-} == FAIL || ${RESULT[$dep]:-} == skipped ]]; then blocked="$dep"; fi
  done
  if [[ -n $blocked ]]; then
    step "$s: skipped ($blocked did not pass)"
    RESULT[$s]=skipped TIME[$s]=0.0
    continue
  fi
  if [[ $BACKGROUND == *" $s "* && ${TAPEDECK_SERIAL:-0} != 1 ]] \
    && [[ -n $(printf '%s\n' "${STAGES[@]:si+1}" | grep -vx fuzz) ]]; then
    set +e
    start_background "$s"
    set -e
    continue
  fi
  step "$s"
  t="$(now)"
  set +e
  set -m # job control for this one job: its own process group
  # Its output also goes to a log, whose tail the summary repeats if the stage fails.
  (set -o pipefail; (set -e; "stage_$s") 2>&1 | tee "$CARGO_TARGET_DIR/stage-$s.log" >&2) &
  STAGE_PID=$!
  set +m
  wait "$STAGE_PID"
  rc=$?
  STAGE_PID=""
  set -e
  TIME[$s]="$(elapsed "$t" "$(now)")"
  record_result "$s" "$rc"
  ((FAIL_FAST && rc != 0 && rc != SKIP)) && break
  # Nothing but fuzz left: the background stages end before the debug build goes.
  [[ -z $(printf '%s\n' "${STAGES[@]:si+1}" | grep -vx fuzz) ]] && reap_background
  prune_after "$s" "${STAGES[@]:si+1}"
done
REST=""
reap_background

printf '\n==> summary\n' >&2
for s in "${STAGES[@]}"; do
  printf '  %-14s %-8s %7ss\n' "$s" "${RESULT[$s]:-not run}" "${TIME[$s]:-0.0}" >&2
done
printf '  %-14s %-8s %7ss\n' total "$( ((FAILED)) && echo FAIL || echo ok)" "$(elapsed "$T_ALL" "$(now)")" >&2
# A CI page often shows only the end of the run: what each failed stage said last is
# repeated here, after the table, where it is seen.
for s in "${STAGES[@]}"; do
  [[ ${RESULT[$s]:-} == FAIL ]] || continue
  log="$CARGO_TARGET_DIR/stage-$s.log"
  [[ $s == fuzz && -n ${FUZZ_BG_LOG:-} ]] && log=$FUZZ_BG_LOG
  [[ -s $log ]] || continue
  printf '\n==> %s failed; the last %d lines it printed (all of it: %s):\n' "$s" "${FAIL_TAIL:-40}" "$log" >&2
  tail -n "${FAIL_TAIL:-40}" "$log" >&2
done
exit "$FAILED"
