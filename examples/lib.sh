# The shared part of the end-to-end scripts (examples/e2e.sh, faults.sh, clients.sh):
# binaries and their preflight, reporting helpers, a temp work dir whose background
# processes are all killed on exit, a clean environment, command runs with a time limit,
# and the upstream fixture started over TLS on a free port.
#
# Source it after setting NAME (used in messages and the work dir's name), TIMEOUT
# (seconds allowed to each run) and KEEP (1 keeps the work dir).
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
TAPEDECK_BIN="${TAPEDECK_BIN:-$TARGET/release/tapedeck}"
UPSTREAM_BIN="${UPSTREAM_BIN:-$TARGET/release/examples/upstream}"
PYTHON="${PYTHON:-python3}"

T0=$SECONDS
CHECKS=0

step() { printf '==> %s\n' "$*" >&2; }
ok() {
  CHECKS=$((CHECKS + 1))
  printf '  ok   %s\n' "$*" >&2
}
fail() {
  printf '  FAIL %s\n' "$1" >&2
  shift
  local line
  for line in "$@"; do printf '       %s\n' "$line" >&2; done
  printf '%s: FAILED after %d checks passed (%ds)\n' "$NAME" "$CHECKS" "$((SECONDS - T0))" >&2
  exit 1
}
# The last lines of a file, indented, for a failure report.
show_tail() {
  local file=$1 n=${2:-25}
  if [[ -s $file ]]; then
    printf '       --- last lines of %s:\n' "$file" >&2
    tail -n "$n" "$file" | sed 's/^/       | /' >&2
  fi
}

# Absolute paths, so that nothing depends on the current directory.
abs() {
  case $1 in
    /*) printf '%s\n' "$1" ;;
    */*) printf '%s/%s\n' "$(pwd)" "$1" ;;
    *) command -v "$1" || printf '%s\n' "$1" ;;
  esac
}
TAPEDECK_BIN="$(abs "$TAPEDECK_BIN")"
UPSTREAM_BIN="$(abs "$UPSTREAM_BIN")"
PYTHON="$(abs "$PYTHON")"

# preflight_binaries: tapedeck, the upstream and curl are there.
preflight_binaries() {
  [[ -x $TAPEDECK_BIN ]] || fail "no tapedeck binary at $TAPEDECK_BIN" \
    "build it: cargo build --release --bin tapedeck --example upstream (or set TAPEDECK_BIN)"
  [[ -x $UPSTREAM_BIN ]] || fail "no upstream binary at $UPSTREAM_BIN" \
    "build it: cargo build --release --bin tapedeck --example upstream (or set UPSTREAM_BIN)"
  command -v curl >/dev/null || fail "curl is not installed"
}

# preflight_python MODULE...: $PYTHON has these packages, or the script stops and says how
# to install them. Found, not imported: importing openai takes 2 s of CPU on a 2-core
# machine, for every script that checks it (a broken install still fails where it is used,
# with Python's own error).
preflight_python() {
  "$PYTHON" -c 'import importlib.util as u, sys
sys.exit(any(u.find_spec(m) is None for m in sys.argv[1:]))' "$@" 2>/dev/null \
    || fail "$PYTHON cannot import $*" \
      "install them: $PYTHON -m pip install -r examples/requirements.txt (or set PYTHON)"
}

# ---------------------------------------------------------------------------------------
# Work dir and clean-up: every background process is killed, the work dir removed.
WORK="$(mktemp -d "${TMPDIR:-/tmp}/tapedeck-$NAME.XXXXXX")"
BG_PIDS=()
cleanup() {
  local status=$?
  local pid
  for pid in "${BG_PIDS[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
  if [[ $KEEP == 1 ]]; then
    printf '%s: work dir kept: %s\n' "$NAME" "$WORK" >&2
  else
    rm -rf "$WORK"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

STORE="$WORK/store"
CERTS="$WORK/certs"
TAPES="$WORK/tapes"
OUT="$WORK/out"
mkdir -p "$TAPES" "$OUT"
UP_CA="$WORK/upstream-ca.pem"

# The environment of every run: no proxy or trust variable from outside (tapedeck sets
# its own under `-- CMD`), the store and certs of this run only.
unset HTTP_PROXY HTTPS_PROXY ALL_PROXY http_proxy https_proxy all_proxy NO_PROXY no_proxy \
  SSL_CERT_FILE SSL_CERT_DIR REQUESTS_CA_BUNDLE CURL_CA_BUNDLE NODE_EXTRA_CA_CERTS \
  AWS_CA_BUNDLE NODE_USE_ENV_PROXY CURL_FLAGS TAPEDECK_LISTEN
export TAPEDECK_STORE="$STORE" TAPEDECK_CERTS="$CERTS"
export PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 NO_COLOR=1
cd "$ROOT"

# run LABEL CMD...: runs CMD (with a time limit), stdout to $OUT/LABEL.out, stderr to
# $OUT/LABEL.err, exit status to $OUT/LABEL.rc and $RC.
RC=0
run() {
  local label=$1
  shift
  set +e
  timeout --foreground -k 10 "$TIMEOUT" "$@" >"$OUT/$label.out" 2>"$OUT/$label.err" </dev/null
  RC=$?
  set -e
  echo "$RC" >"$OUT/$label.rc"
  if [[ $RC == 124 || $RC == 137 ]]; then
    show_tail "$OUT/$label.err"
    fail "$label: timed out after ${TIMEOUT}s: $*"
  fi
}
expect_status() {
  local label=$1 want=$2 what=$3
  if [[ $RC != "$want" ]]; then
    show_tail "$OUT/$label.out"
    show_tail "$OUT/$label.err" 40
    fail "$what: exit status $RC, expected $want"
  fi
}
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

# start_upstream: the upstream fixture over TLS on a free port; sets UP_PID, BASE and
# UP_CA, and checks it answers with its CA.
start_upstream() {
  "$UPSTREAM_BIN" --tls --port 0 --ca-out "$UP_CA" >"$WORK/upstream.out" 2>"$WORK/upstream.err" &
  UP_PID=$!
  BG_PIDS+=("$UP_PID")
  BASE=""
  for _ in $(seq 300); do
    if BASE="$(sed -n 's/^listening on //p' "$WORK/upstream.out" | head -n 1)" && [[ -n $BASE ]]; then
      break
    fi
    kill -0 "$UP_PID" 2>/dev/null || { show_tail "$WORK/upstream.err"; fail "the upstream exited before listening"; }
    sleep 0.1
  done
  [[ -n $BASE ]] || { show_tail "$WORK/upstream.err"; fail "the upstream printed no 'listening on' line in 30s"; }
  [[ -s $UP_CA ]] || fail "the upstream wrote no CA to $UP_CA"
  curl -sS --fail --max-time 10 --cacert "$UP_CA" "$BASE/weather?city=Paris" >"$OUT/upstream-probe.out" 2>"$OUT/upstream-probe.err" \
    || { show_tail "$OUT/upstream-probe.err"; fail "the upstream at $BASE does not answer over TLS with its CA"; }
}
