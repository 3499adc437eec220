#!/usr/bin/env bash
# Fuzzes tapedeck's parsers with cargo-fuzz (libFuzzer) on the nightly toolchain.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Builds every target in fuzz/fuzz_targets/ once, then runs each TARGET (default: all)
# for SECONDS (default 600), and ends with a table: runs executed, coverage (cov/ft from
# libFuzzer's final stats), corpus size, crashes and slow inputs (over 10 s, kept in
# fuzz/artifacts/TARGET/slow-unit-*; not failures). Exits 1 if any target crashed (a
# panic, a failed property, a timeout or running out of memory); the input is kept in
# fuzz/artifacts/TARGET/ and the table says how to reproduce it.
#
# Inputs: fuzz/corpus/TARGET/ holds the committed seeds (read only); what a run learns
# goes to fuzz/target/corpus/TARGET/ (not committed) and is picked up by the next run.
#
# Env:
#   FUZZ_JOBS       targets run at once (default 1); each is one process on one core
#   FUZZ_SANITIZER  cargo fuzz --sanitizer (default none: tapedeck has no unsafe code,
#                   and the targets hunt panics and broken properties; `address` halves
#                   the speed)
#   FUZZ_TIMEOUT    seconds one input may take before it counts as a hang (default 30)
#   FUZZ_RSS_MB     memory limit per target (default 2048)
#   FUZZ_NICE       nice level of the fuzzing processes (default 10)
# Needs: rustup's nightly toolchain; cargo-fuzz (installed with `cargo install
# cargo-fuzz --locked` when missing).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# The targets' own build directory, whatever CARGO_TARGET_DIR the caller exports
# (scripts/test.sh does): another toolchain and other flags would only thrash a shared one.
export CARGO_TARGET_DIR="$ROOT/fuzz/target"
SECONDS_EACH="${1:-600}"
shift || true
JOBS="${FUZZ_JOBS:-1}"
SANITIZER="${FUZZ_SANITIZER:-none}"
TIMEOUT="${FUZZ_TIMEOUT:-30}"
RSS_MB="${FUZZ_RSS_MB:-2048}"
NICE="${FUZZ_NICE:-10}"
[[ $SECONDS_EACH =~ ^[0-9]+$ ]] || { echo "fuzz.sh: SECONDS must be a number, got '$SECONDS_EACH'" >&2; exit 2; }

say() { printf '==> %s\n' "$*" >&2; }

# --- tools ---------------------------------------------------------------------------------
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz.sh: no nightly toolchain (cargo-fuzz needs one): rustup toolchain install nightly" >&2
  exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  say "cargo-fuzz is missing: cargo install cargo-fuzz --locked"
  t0=$SECONDS
  cargo install cargo-fuzz --locked
  say "installed $(cargo +nightly fuzz --version) in $((SECONDS - t0))s"
fi

ALL=()
for f in fuzz/fuzz_targets/*.rs; do ALL+=("$(basename "$f" .rs)"); done
if (($#)); then
  TARGETS=("$@")
  for t in "${TARGETS[@]}"; do
    [[ " ${ALL[*]} " == *" $t "* ]] || { echo "fuzz.sh: no target '$t' (targets: ${ALL[*]})" >&2; exit 2; }
  done
else
  TARGETS=("${ALL[@]}")
fi

# --- build -----------------------------------------------------------------------------------
say "building ${#ALL[@]} targets (cargo +nightly fuzz build --sanitizer $SANITIZER)"
t0=$SECONDS
nice -n "$NICE" cargo +nightly fuzz build --sanitizer "$SANITIZER"
say "built in $((SECONDS - t0))s"
BIN_DIR="$ROOT/fuzz/target/x86_64-unknown-linux-gnu/release"
LOGS="$ROOT/fuzz/target/logs"
mkdir -p "$LOGS"

# --- run -------------------------------------------------------------------------------------
# artifacts TARGET FIND-TEST...: the inputs this run kept for TARGET (crash-*, timeout-*,
# slow-unit-*, ...), narrowed by the find tests given.
artifacts() { find "$ROOT/fuzz/artifacts/$1" -type f -newer "$LOGS/$1.start" "${@:2}"; }

run_one() {
  local t=$1 work="$ROOT/fuzz/target/corpus/$1" arts="$ROOT/fuzz/artifacts/$1" log="$LOGS/$1.log"
  mkdir -p "$work" "$arts"
  touch "$LOGS/$t.start"
  set +e
  # libFuzzer in one process on one core (-jobs/-workers would fork it and move the
  # output into fuzz-N.log; this is the same load, with the output here).
  nice -n "$NICE" "$BIN_DIR/$t" "$work" "$ROOT/fuzz/corpus/$t" \
    -max_total_time="$SECONDS_EACH" -timeout="$TIMEOUT" -rss_limit_mb="$RSS_MB" \
    -artifact_prefix="$arts/" -print_final_stats=1 >"$log" 2>&1
  local rc=$?
  set -e
  # libFuzzer keeps an input that took over 10 s (wall) as slow-unit-*, and exits 0: a
  # finding to look at, not a failure (a target starved of CPU writes them too). A hang is
  # FUZZ_TIMEOUT's timeout-*, a failure.
  echo "$rc $(artifacts "$t" ! -name 'slow-unit-*' | wc -l)" \
    "$(artifacts "$t" -name 'slow-unit-*' | wc -l)" >"$LOGS/$t.rc"
}

say "running ${#TARGETS[@]} targets for ${SECONDS_EACH}s each, $JOBS at a time"
running=0
for t in "${TARGETS[@]}"; do
  say "$t"
  run_one "$t" &
  running=$((running + 1))
  if ((running >= JOBS)); then
    wait -n || true
    running=$((running - 1))
  fi
done
wait || true

# --- report ----------------------------------------------------------------------------------
FAILED=0
printf '\n%-16s %12s %8s %8s %8s %8s %6s  %s\n' target runs cov ft corpus crashes slow result
for t in "${TARGETS[@]}"; do
  log="$LOGS/$t.log"
  read -r rc new slow <"$LOGS/$t.rc"
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+' "$log" | grep 'cov:' | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$last")
  result=ok
  if ((rc != 0 || new > 0)); then
    result="CRASH (exit $rc)"
    FAILED=1
  fi
  printf '%-16s %12s %8s %8s %8s %8s %6s  %s\n' "$t" "${runs:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$new" "$slow" "$result"
done
if ((FAILED)); then
  echo >&2
  for t in "${TARGETS[@]}"; do
    read -r rc new slow <"$LOGS/$t.rc"
    ((rc != 0 || new > 0)) || continue
    echo "--- $t: exit $rc; log $LOGS/$t.log; reproduce with:" >&2
    artifacts "$t" ! -name 'slow-unit-*' | sed "s|^|  $BIN_DIR/$t |" >&2
    grep -E -A12 "panicked at|ERROR: libFuzzer|SUMMARY" "$LOGS/$t.log" | head -30 >&2 || true
    # The input itself, for a run whose files are gone with its machine (CI): base64 -d
    # into a file and replay it as above.
    while read -r f; do
      if (($(stat -c %s "$f") <= 8192)); then
        echo "  input $(basename "$f") (base64): $(base64 -w0 "$f")" >&2
      fi
    done < <(artifacts "$t" ! -name 'slow-unit-*')
  done
fi
exit "$FAILED"
