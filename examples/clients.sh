#!/usr/bin/env bash
# Real clients, recorded once and replayed offline many times: does replay pass every
# faithful rerun (no false misses, identical results), and still catch a reordered one?
# And does every client trust tapedeck under `record -- CMD` with the user's own CA
# settings present? (issue 8)
#
#   TAPEDECK_BIN   the tapedeck binary      (default $CARGO_TARGET_DIR/debug/tapedeck,
#                                            CARGO_TARGET_DIR defaulting to ./target); point
#                                            it at another build to check that build
#   UPSTREAM_BIN   the example upstream     (default $CARGO_TARGET_DIR/debug/examples/upstream)
#   NODE           node (default node); examples/node_modules must hold undici
#   REPLAYS        replays of each recording (default 3; the README's numbers use 20)
#   RECORDINGS     recordings of each scenario, each replayed REPLAYS times (default 1)
#   REPLAY_ORDER   passed to `replay --order` (default: none, tapedeck's default order);
#                  REPLAY_ORDER=any checks the harness itself (every faithful rerun passes)
#   CLIENTS_ONLY   run only these scenarios (space-separated names, see the table)
#   CLIENTS_TIMEOUT  seconds allowed to each command run (default 180)
#   CLIENTS_KEEP=1 keep the temp work dir (its path is printed)
#   PYTHON_FOR_VENV  the python that makes the venvs (default python3)
#
# Steps (each prints "ok"/"FAIL" lines on stderr; the table goes to stdout):
#   1. a "corporate" test CA (openssl) and a certificate from it for localhost and
#      127.0.0.1 (servers are named localhost: npm through a proxy checks an IP host's
#      certificate against the name "localhost")
#   2. setup, cached under $CARGO_TARGET_DIR/clients/ keyed by a hash of what made it:
#      a venv with examples/clients/requirements.txt (hypercorn, pypiserver,
#      httpx[http2], requests, openai); verdaccio 6.8.0 installed with npm from
#      examples/clients/verdaccio/package.json; the npm tree of make_npm_tree.py
#      published to a verdaccio with `npm publish` (its storage is kept); the wheels of
#      make_wheels.py
#   3. servers on 127.0.0.1 with free ports, over HTTPS with the corporate certificate:
#      the fixture (tls_server.py: /item/N and zero-byte bodies), pypiserver (the wheels
#      uploaded to it), verdaccio (a copy of the published storage), git http-backend (a
#      small repository); and examples/upstream (LLM and weather tool) with its own CA
#   4. each scenario run directly, then recorded RECORDINGS times with `tapedeck record
#      --upstream-ca ... -- CMD` (same result as the direct run)
#   5. trust: npm, pip, git, curl, python, node under `record -- CMD` with the user's
#      own CA variables (or an .npmrc cafile=) at the corporate bundle before tapedeck runs
#   6. every server stopped (the ports must refuse); each recording replayed REPLAYS
#      times with `tapedeck replay -- CMD`: false misses (exit 3, a miss in the summary,
#      or an x-tapedeck-miss seen by the client) and identical results (stdout)
#   7. the sequential agent with two dependent steps swapped must fail with an
#      out-of-order miss (exit 3)
#   8. a table: scenario, recordings, replays, false misses, identical results, time
# All temp state is in one work dir, removed on exit with every background server killed.
# Exit 1 if any row failed.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TARGET="${CARGO_TARGET_DIR:-$HERE/../target}"
TAPEDECK_BIN="${TAPEDECK_BIN:-$TARGET/debug/tapedeck}"
UPSTREAM_BIN="${UPSTREAM_BIN:-$TARGET/debug/examples/upstream}"
NAME=clients
TIMEOUT="${CLIENTS_TIMEOUT:-180}"
KEEP="${CLIENTS_KEEP:-0}"
REPLAYS="${REPLAYS:-3}"
RECORDINGS="${RECORDINGS:-1}"
REPLAY_ORDER="${REPLAY_ORDER:-}"
ONLY="${CLIENTS_ONLY:-}"
PYTHON_FOR_VENV="${PYTHON_FOR_VENV:-python3}"

# The machine's own trust settings, kept for the installs from the public registries
# (lib.sh clears them for the scenarios, which set their own).
TRUST_VARS=(SSL_CERT_FILE SSL_CERT_DIR REQUESTS_CA_BUNDLE CURL_CA_BUNDLE NODE_EXTRA_CA_CERTS
  AWS_CA_BUNDLE NPM_CONFIG_CAFILE npm_config_cafile PIP_CERT GIT_SSL_CAINFO CARGO_HTTP_CAINFO
  DENO_CERT HTTPLIB2_CA_CERTS GRPC_DEFAULT_SSL_ROOTS_FILE_PATH)
HOST_ENV=()
for v in "${TRUST_VARS[@]}" PIP_CONFIG_FILE PIP_FIND_LINKS; do
  [[ -n ${!v:-} ]] && HOST_ENV+=("$v=${!v}")
done
host_env() { env -u NPM_CONFIG_GLOBALCONFIG -u NPM_CONFIG_USERCONFIG -u PIP_CONFIG_FILE "${HOST_ENV[@]}" "$@"; }

# shellcheck source=examples/lib.sh
source "$HERE/lib.sh"
NODE="$(abs "${NODE:-node}")"
C="$ROOT/examples/clients"
CACHE="$TARGET/clients"
mkdir -p "$CACHE"
CACHE="$(cd "$CACHE" && pwd)"

# Clean client environment: no trust setting and no package-client config from outside.
unset "${TRUST_VARS[@]}" PIP_FIND_LINKS PIP_INDEX_URL PIP_EXTRA_INDEX_URL npm_config_registry \
  NPM_CONFIG_REGISTRY
export PIP_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
# No retries: a failure shows at once, and the traffic is the same on every run.
export PIP_RETRIES=0 NPM_CONFIG_FETCH_RETRIES=0
export NPM_CONFIG_USERCONFIG="$WORK/npmrc" NPM_CONFIG_GLOBALCONFIG="$WORK/npmrc-global" NPM_CONFIG_UPDATE_NOTIFIER=false
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null GIT_TERMINAL_PROMPT=0
export OPENAI_API_KEY="sk-clients-not-a-real-key" OPENAI_MAX_RETRIES=0
# Every temp file of every command (npm, pip, curl_empty.sh, tapedeck) in the work dir too.
mkdir -p "$WORK/tmp"
export TMPDIR="$WORK/tmp"
: >"$WORK/npmrc"
: >"$WORK/npmrc-global"
sha() { cat "$@" | sha256sum | cut -c1-16; }

step "preflight"
preflight_binaries
for tool in "$NODE" npm git openssl "$PYTHON_FOR_VENV"; do
  command -v "$tool" >/dev/null || fail "$tool is not installed"
done
[[ -f $ROOT/examples/node_modules/undici/package.json ]] \
  || fail "examples/node_modules has no undici" "install it: npm install --prefix examples (scripts/test.sh setup-node)"
ok "tapedeck $TAPEDECK_BIN ($("$TAPEDECK_BIN" --version 2>/dev/null || echo '?')), node $("$NODE" --version), npm $(npm --version), $(git --version)"
ORDER_ARGS=()
[[ -n $REPLAY_ORDER ]] && ORDER_ARGS=(--order "$REPLAY_ORDER")
printf '  replay order: %s, %s recording(s) x %s replay(s) per scenario\n' \
  "${REPLAY_ORDER:-tapedeck default}" "$RECORDINGS" "$REPLAYS" >&2

# ---------------------------------------------------------------------------------------
step "1. a corporate test CA and a certificate from it for localhost and 127.0.0.1"
PKI="$WORK/pki"
mkdir -p "$PKI"
CORP_CA="$PKI/corp-ca.pem"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj "/O=Example Corp/CN=Example Corp Test Root CA" -keyout "$PKI/corp-ca.key" -out "$CORP_CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  >"$PKI/openssl.log" 2>&1 || { show_tail "$PKI/openssl.log"; fail "openssl could not make the CA"; }
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/O=Example Corp/CN=127.0.0.1" \
  -keyout "$PKI/server.key" -out "$PKI/server.csr" >>"$PKI/openssl.log" 2>&1
printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=critical,CA:FALSE" \
  "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" \
  "subjectKeyIdentifier=hash" "authorityKeyIdentifier=keyid" >"$PKI/server.ext"
openssl x509 -req -in "$PKI/server.csr" -CA "$CORP_CA" -CAkey "$PKI/corp-ca.key" -CAcreateserial \
  -days 2 -extfile "$PKI/server.ext" -out "$PKI/server.pem" >>"$PKI/openssl.log" 2>&1 \
  || { show_tail "$PKI/openssl.log"; fail "openssl could not sign the server certificate"; }
# What a corporate machine's trust settings point at: the system roots plus the corporate CA.
CORP_BUNDLE="$PKI/corp-bundle.pem"
cat /etc/ssl/certs/ca-certificates.crt "$CORP_CA" >"$CORP_BUNDLE" 2>/dev/null || cp "$CORP_CA" "$CORP_BUNDLE"
ok "CA $CORP_CA, server certificate $PKI/server.pem, corporate bundle $CORP_BUNDLE"

# ---------------------------------------------------------------------------------------
# Background servers: start_server VAR LABEL CMD... runs CMD, waits for its
# `listening on URL` line, and sets VAR to URL.
declare -A SERVER_PID=()
start_server() {
  local var=$1 label=$2 url=""
  shift 2
  # Made here: the background job opens it after the loop below may already read it.
  : >"$WORK/$label.out"
  "$@" >"$WORK/$label.out" 2>"$WORK/$label.err" &
  SERVER_PID[$label]=$!
  BG_PIDS+=("$!")
  for _ in $(seq 600); do
    url="$(sed -n 's/^listening on //p' "$WORK/$label.out" | head -n 1)"
    [[ -n $url ]] && break
    kill -0 "${SERVER_PID[$label]}" 2>/dev/null || { show_tail "$WORK/$label.err"; fail "$label exited before listening"; }
    sleep 0.1
  done
  [[ -n $url ]] || { show_tail "$WORK/$label.err"; fail "$label printed no 'listening on' line in 60s"; }
  printf -v "$var" '%s' "$url"
}
stop_server() {
  local label=$1 pid=${SERVER_PID[$1]}
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
verdaccio_config() { # verdaccio_config FILE STORAGE
  sed -e "s|@STORAGE@|$2|" -e "s|@HTPASSWD@|$WORK/verdaccio-htpasswd|" \
    -e "s|@KEY@|$PKI/server.key|" -e "s|@CERT@|$PKI/server.pem|" "$C/verdaccio/config.yaml.in" >"$1"
}

# ---------------------------------------------------------------------------------------
step "2. setup (cached under $CACHE)"
t_setup=$SECONDS
VENV="$CACHE/venv"
want="$(sha "$C/requirements.txt")"
if [[ -x $VENV/bin/python && $(cat "$VENV/.tapedeck-requirements" 2>/dev/null) == "$want" ]]; then
  ok "venv $VENV is up to date"
else
  rm -rf "$VENV"
  "$PYTHON_FOR_VENV" -m venv "$VENV"
  host_env bash -c 'source "$1"; shift; pip_install "$@"' pip "$HERE/../scripts/pip.sh" "$VENV/bin/python" -r "$C/requirements.txt" \
    >"$WORK/venv-install.log" 2>&1 || { show_tail "$WORK/venv-install.log"; fail "pip could not install $C/requirements.txt"; }
  echo "$want" >"$VENV/.tapedeck-requirements"
  ok "venv $VENV installed from examples/clients/requirements.txt"
fi
PYTHON="$VENV/bin/python"
PIP="$VENV/bin/pip"
export PYTHON PIP PYTHON_FOR_VENV

VERDACCIO="$CACHE/verdaccio"
want="$(sha "$C/verdaccio/package.json")"
if [[ -f $VERDACCIO/node_modules/verdaccio/package.json && $(cat "$VERDACCIO/.tapedeck-package" 2>/dev/null) == "$want" ]]; then
  ok "verdaccio in $VERDACCIO is up to date"
else
  rm -rf "$VERDACCIO"
  mkdir -p "$VERDACCIO"
  cp "$C/verdaccio/package.json" "$VERDACCIO/package.json"
  host_env npm install --prefix "$VERDACCIO" --no-audit --no-fund --loglevel=error >"$WORK/verdaccio-install.log" 2>&1 \
    || { show_tail "$WORK/verdaccio-install.log"; fail "npm could not install verdaccio"; }
  echo "$want" >"$VERDACCIO/.tapedeck-package"
  ok "verdaccio installed in $VERDACCIO: $(cd "$VERDACCIO" && "$NODE" -p 'const v = (p) => require(`./node_modules/${p}/package.json`).version; `verdaccio ${v("verdaccio")}, node-fetch ${v("node-fetch")}`')"
fi

# The npm tree, published once to a verdaccio whose storage is kept.
NPM_TREE="$CACHE/npm-tree-$(sha "$C/make_npm_tree.py" "$C/verdaccio/package.json" "$C/verdaccio/config.yaml.in")"
if [[ -f $NPM_TREE/published ]]; then
  ok "npm tree $NPM_TREE: $(wc -l <"$NPM_TREE/publish-order.txt") versions already published"
else
  rm -rf "$NPM_TREE"
  mkdir -p "$NPM_TREE"
  "$PYTHON" "$C/make_npm_tree.py" "$NPM_TREE"
  verdaccio_config "$WORK/verdaccio-publish.yaml" "$NPM_TREE/storage"
  start_server PUBLISH_URL verdaccio-publish "$NODE" "$C/verdaccio_serve.cjs" "$VERDACCIO" "$WORK/verdaccio-publish.yaml"
  token="$(curl -sS --fail --cacert "$CORP_CA" -X PUT -H 'content-type: application/json' \
    -d '{"name": "publisher", "password": "publisher-password"}' \
    "$PUBLISH_URL/-/user/org.couchdb.user:publisher" | "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["token"])')" \
    || fail "could not add a user to verdaccio at $PUBLISH_URL"
  printf '//%s/:_authToken=%s\n' "${PUBLISH_URL#https://}" "$token" >"$WORK/publish-npmrc"
  # npm publish of one round's folders, four at a time (each waits on verdaccio more than
  # it computes).
  publish_round() {
    awk -v r="$1" '$1 == r { print $2 }' "$NPM_TREE/publish-order.txt" | xargs -P 4 -I{} sh -c \
      'cd "$1/packages/$2" && npm publish --registry "$3" --userconfig "$4" --cafile "$5" --loglevel=error >/dev/null 2>"$1/publish-$$.err" || { cat "$1/publish-$$.err" >&2; exit 255; }' \
      _ "$NPM_TREE" {} "$PUBLISH_URL/" "$WORK/publish-npmrc" "$CORP_CA"
  }
  for round in $(cut -d' ' -f1 "$NPM_TREE/publish-order.txt" | sort -un); do
    publish_round "$round" || fail "npm publish failed (round $round)"
  done
  stop_server verdaccio-publish
  touch "$NPM_TREE/published"
  ok "npm tree built and published: $(wc -l <"$NPM_TREE/publish-order.txt") versions, storage $NPM_TREE/storage"
fi

WHEELS="$CACHE/wheels-$(sha "$C/make_wheels.py")"
if [[ ! -f $WHEELS/built ]]; then
  rm -rf "$WHEELS"
  "$PYTHON" "$C/make_wheels.py" "$WHEELS"
  touch "$WHEELS/built"
fi
ok "wheels $WHEELS: $(ls "$WHEELS"/*.whl | wc -l)"
ok "setup took $((SECONDS - t_setup))s"

# ---------------------------------------------------------------------------------------
step "3. the servers, over HTTPS with the corporate certificate, on free ports"
TLS_ARGS=(--cert "$PKI/server.pem" --key "$PKI/server.key")
start_server FIXTURE_URL fixture "$PYTHON" "$C/tls_server.py" --app fixture "${TLS_ARGS[@]}"
ok "fixture (tls_server.py) at $FIXTURE_URL"

mkdir -p "$WORK/pypi-packages"
start_server PYPI_URL pypiserver "$PYTHON" "$C/tls_server.py" --app pypi --root "$WORK/pypi-packages" "${TLS_ARGS[@]}"
for whl in "$WHEELS"/*.whl; do
  curl -sS --fail --max-time 30 --cacert "$CORP_CA" -F ':action=file_upload' -F "content=@$whl" "$PYPI_URL/" \
    >>"$WORK/pypi-upload.log" 2>&1 || { show_tail "$WORK/pypi-upload.log"; fail "could not upload $(basename "$whl") to pypiserver"; }
done
ok "pypiserver at $PYPI_URL: $(ls "$WORK/pypi-packages" | wc -l) wheels uploaded"

cp -R "$NPM_TREE/storage" "$WORK/verdaccio-storage"
verdaccio_config "$WORK/verdaccio.yaml" "$WORK/verdaccio-storage"
start_server NPM_URL verdaccio "$NODE" "$C/verdaccio_serve.cjs" "$VERDACCIO" "$WORK/verdaccio.yaml"
ok "verdaccio at $NPM_URL: the published tree ($(find "$WORK/verdaccio-storage" -name '*.tgz' | wc -l) tarballs)"

# A small repository with a fixed author and dates, so its refs are the same every run.
GIT_ROOT="$WORK/git"
mkdir -p "$GIT_ROOT/src"
(
  export GIT_AUTHOR_NAME=tapedeck GIT_AUTHOR_EMAIL=tapedeck@example.test GIT_AUTHOR_DATE="2024-01-01T00:00:00Z"
  export GIT_COMMITTER_NAME=tapedeck GIT_COMMITTER_EMAIL=tapedeck@example.test GIT_COMMITTER_DATE="2024-01-01T00:00:00Z"
  cd "$GIT_ROOT/src"
  git init -q -b main && echo "demo" >README && git add README && git commit -q -m demo
  git tag v1.0 && git clone -q --bare "$GIT_ROOT/src" "$GIT_ROOT/demo.git"
) >"$WORK/git-init.log" 2>&1 || { show_tail "$WORK/git-init.log"; fail "could not make the git repository"; }
start_server GIT_URL git-server "$PYTHON" "$C/tls_server.py" --app git --root "$GIT_ROOT" "${TLS_ARGS[@]}"
ok "git http-backend at $GIT_URL/demo.git"

start_upstream
ok "examples/upstream (LLM and weather tool) at $BASE, its own CA $UP_CA"

export UPLOAD_CSRF="Csrf-Upl0ad-Form-Token-$RANDOM$RANDOM"
export FIXTURE_URL NPM_REGISTRY="$NPM_URL/" PYPI_INDEX="$PYPI_URL/simple/"
export LLM_BASE_URL="$BASE/v1" WEATHER_URL="$BASE/weather"
UPSTREAM_CAS=(--upstream-ca "$CORP_CA" --upstream-ca "$UP_CA")
# A direct run (no tapedeck) trusts both servers' CAs.
cat "$CORP_CA" "$UP_CA" >"$PKI/direct.pem"
DIRECT_ENV=(env SSL_CERT_FILE="$PKI/direct.pem" REQUESTS_CA_BUNDLE="$PKI/direct.pem"
  CURL_CA_BUNDLE="$PKI/direct.pem" NODE_EXTRA_CA_CERTS="$PKI/direct.pem" PIP_CERT="$PKI/direct.pem")

# ---------------------------------------------------------------------------------------
# The scenarios. cmd_of NAME RUN_DIR sets CMD (RUN_DIR: a fresh folder for this run).
SCENARIOS=(httpx-h2 httpx-h1-pool8 node-fetch parallel-agent npm-install pip-install
  npm-install-ip sequential-agent empty-python empty-curl upload-forms openai-transcribe twin-ids)
cmd_of() {
  case $1 in
    httpx-h2) CMD=("$PYTHON" "$C/gather_httpx.py" --http2 --n 24) ;;
    httpx-h1-pool8) CMD=("$PYTHON" "$C/gather_httpx.py" --pool 8 --n 24) ;;
    node-fetch) CMD=("$NODE" "$C/node_fetch_all.mjs" 24) ;;
    parallel-agent) CMD=("$PYTHON" "$C/parallel_agent.py") ;;
    npm-install) CMD=(bash "$C/npm_install.sh" "$2" "$NPM_TREE/app-package.json") ;;
    # The same registry by address: npm checks the certificate of an IP host against
    # "localhost" when it goes through a proxy.
    npm-install-ip) CMD=(env NPM_REGISTRY="${NPM_URL/\/\/localhost:/\/\/127.0.0.1:}/"
      bash "$C/npm_install.sh" "$2" "$NPM_TREE/app-package.json") ;;
    pip-install) CMD=(bash "$C/pip_install.sh" "$2") ;;
    sequential-agent) CMD=("$PYTHON" "$C/sequential_agent.py") ;;
    empty-python) CMD=("$PYTHON" "$C/empty_bodies.py") ;;
    empty-curl) CMD=(bash "$C/curl_empty.sh") ;;
    upload-forms) CMD=("$PYTHON" "$C/upload_forms.py") ;;
    openai-transcribe) CMD=("$PYTHON" "$C/transcribe_openai.py") ;;
    twin-ids) CMD=("$PYTHON" "$C/twin_ids.py") ;;
    *) fail "unknown scenario $1" ;;
  esac
}
selected() { [[ -z $ONLY || " $ONLY " == *" $1 "* ]]; }

# attempt LABEL CMD...: like lib.sh's run, but a time-out is a result, not the end.
attempt() {
  local label=$1
  shift
  set +e
  timeout --foreground -k 10 "$TIMEOUT" "$@" >"$OUT/$label.out" 2>"$OUT/$label.err" </dev/null
  RC=$?
  set -e
}
RUN_N=0
next_run_dir() { RUN_N=$((RUN_N + 1)); RUN_DIR="$WORK/runs/$1-$RUN_N"; }
# misses LABEL: the misses of a replay run, from tapedeck's summary line (or, if it has
# none, the miss lines it logged) plus the responses that the client saw marked as misses.
misses() {
  local n
  n="$(sed -nE 's/.*replayed session .*[^0-9]([0-9]+) miss(es)?([^a-z-].*)?$/\1/p' "$OUT/$1.err" | tail -n 1)"
  [[ -n $n ]] || n="$(grep -ci 'miss' "$OUT/$1.err" || true)"
  local seen
  seen="$(grep -c ' MISS ' "$OUT/$1.out" || true)"
  ((seen > n)) && n=$seen
  echo "$n"
}
# first_line LABEL REGEX: the first line of a run's stderr, else stdout, that matches.
first_line() {
  cat "$OUT/$1.err" "$OUT/$1.out" 2>/dev/null | grep -m1 -iE "$2" | sed 's/^ *//' | cut -c1-180 || true
}
# client_error LABEL: the client's own first error line (tapedeck's log lines left out).
client_error() {
  cat "$OUT/$1.err" "$OUT/$1.out" 2>/dev/null | grep -vE '^ *(INFO|WARN|ERROR|DEBUG) |^tapedeck: ' \
    | grep -m1 -iE 'error|fatal|unable|certificate|ssl' | sed 's/^ *//' | cut -c1-180 || true
}

declare -A RECS=() REPS=() MISS_RUNS=() MISS_N=() SAME=() SECS=() NOTE=()
note() { [[ -n ${NOTE[$1]:-} ]] || NOTE[$1]=$2; }

# ---------------------------------------------------------------------------------------
step "4. each scenario run directly, then recorded ($RECORDINGS time(s)) under tapedeck record -- CMD"
for s in "${SCENARIOS[@]}"; do
  selected "$s" || continue
  t0=$SECONDS
  RECS[$s]=0 REPS[$s]=0 MISS_RUNS[$s]=0 MISS_N[$s]=0 SAME[$s]=0
  next_run_dir "$s"
  cmd_of "$s" "$RUN_DIR"
  attempt "$s.direct" "${DIRECT_ENV[@]}" "${CMD[@]}"
  if [[ $RC != 0 ]]; then
    show_tail "$OUT/$s.direct.err"
    note "$s" "the direct run (no tapedeck) failed, exit $RC: the harness is broken"
    printf '  FAIL %s: direct run exit %s\n' "$s" "$RC" >&2
    SECS[$s]=$((SECONDS - t0))
    continue
  fi
  for k in $(seq "$RECORDINGS"); do
    extra=()
    [[ $s == sequential-agent ]] && extra=(--save "$WORK/sequential-r$k.json")
    next_run_dir "$s"
    cmd_of "$s" "$RUN_DIR"
    attempt "$s-r$k.record" "$TAPEDECK_BIN" record --session "$s-r$k" "${UPSTREAM_CAS[@]}" -- "${CMD[@]}" "${extra[@]}"
    if [[ $RC != 0 ]]; then
      note "$s" "recording $k: exit $RC: $(first_line "$s-r$k.record" 'error|fail|miss')"
      printf '  FAIL %s: recording %d exit %s\n' "$s" "$k" "$RC" >&2
      show_tail "$OUT/$s-r$k.record.err" 8
    elif ! cmp -s "$OUT/$s.direct.out" "$OUT/$s-r$k.record.out"; then
      note "$s" "recording $k: its result differs from the direct run's"
      printf '  FAIL %s: recording %d differs from the direct run\n' "$s" "$k" >&2
      diff "$OUT/$s.direct.out" "$OUT/$s-r$k.record.out" | head -n 10 | sed 's/^/       | /' >&2 || true
    else
      RECS[$s]=$((RECS[$s] + 1))
    fi
  done
  SECS[$s]=$((SECONDS - t0))
  ((RECS[$s] == RECORDINGS)) && ok "$s: direct run and $RECORDINGS recording(s) agree ($(wc -l <"$OUT/$s.direct.out") result lines)"
done
# upload-forms sends a `csrf_token` part whose value looks like a key: it is a secret.
if selected upload-forms; then
  if grep -rqaF -- "$UPLOAD_CSRF" "$STORE"; then
    fail "upload-forms: the csrf_token part's value reached the store"
  fi
  ok "upload-forms: the csrf_token part's value is nowhere in the store"
fi

# ---------------------------------------------------------------------------------------
step "5. trust: each client under tapedeck record -- CMD with the user's own CA settings"
# What a corporate machine sets: every client's CA variable at the corporate bundle.
USER_CA_ENV=(SSL_CERT_FILE="$CORP_BUNDLE" REQUESTS_CA_BUNDLE="$CORP_BUNDLE" CURL_CA_BUNDLE="$CORP_BUNDLE"
  NODE_EXTRA_CA_CERTS="$CORP_BUNDLE" PIP_CERT="$CORP_BUNDLE" GIT_SSL_CAINFO="$CORP_BUNDLE")
TRUSTS=(trust-npm trust-npmrc trust-pip trust-git trust-curl trust-python trust-node)
# trust_of NAME RUN_DIR sets WHAT (the setting under test), USER_ENV (the user's settings,
# present before tapedeck starts) and CMD.
trust_of() {
  local d=$2
  case $1 in
    trust-npm)
      WHAT="npm with NPM_CONFIG_CAFILE"
      USER_ENV=(env "${USER_CA_ENV[@]}" NPM_CONFIG_CAFILE="$CORP_BUNDLE")
      CMD=(npm view tdk-top-0 version --registry "$NPM_REGISTRY" --cache "$d/cache") ;;
    trust-npmrc)
      WHAT="npm with cafile= in the project's .npmrc"
      mkdir -p "$d/project"
      echo '{"name": "trust-check", "version": "1.0.0", "private": true}' >"$d/project/package.json"
      printf 'cafile=%s\nregistry=%s\n' "$CORP_BUNDLE" "$NPM_REGISTRY" >"$d/project/.npmrc"
      USER_ENV=(env "${USER_CA_ENV[@]}")
      CMD=(bash -c 'cd "$1" && npm view tdk-leaf-02 version --cache "$2"' _ "$d/project" "$d/cache") ;;
    trust-pip)
      WHAT="pip with PIP_CERT"
      USER_ENV=(env "${USER_CA_ENV[@]}")
      CMD=(bash -c '"$PIP" download --quiet --no-deps --no-cache-dir --index-url "$PYPI_INDEX" -d "$1" tdk-core==1.1.0 && cd "$1" && sha256sum *.whl' _ "$d") ;;
    trust-git)
      WHAT="git with GIT_SSL_CAINFO (git http-backend)"
      USER_ENV=(env "${USER_CA_ENV[@]}")
      CMD=(git ls-remote "$GIT_URL/demo.git") ;;
    trust-curl)
      WHAT="curl with CURL_CA_BUNDLE"
      USER_ENV=(env "${USER_CA_ENV[@]}")
      CMD=(curl -sS --fail --max-time 30 "$FIXTURE_URL/item/3") ;;
    trust-python)
      WHAT="python httpx and requests with SSL_CERT_FILE, REQUESTS_CA_BUNDLE"
      USER_ENV=(env "${USER_CA_ENV[@]}")
      CMD=("$PYTHON" -c 'import httpx, os, requests
url = os.environ["FIXTURE_URL"] + "/item/4"
print(httpx.get(url).text)
print(requests.get(url).text)') ;;
    trust-node)
      WHAT="node fetch with NODE_EXTRA_CA_CERTS"
      USER_ENV=(env "${USER_CA_ENV[@]}")
      CMD=("$NODE" "$C/node_fetch_all.mjs" 3) ;;
    *) fail "unknown trust check $1" ;;
  esac
}
declare -A TRUST_WHAT=()
for s in "${TRUSTS[@]}"; do
  selected "$s" || continue
  t0=$SECONDS
  RECS[$s]=0 REPS[$s]=0
  next_run_dir "$s"
  trust_of "$s" "$RUN_DIR"
  TRUST_WHAT[$s]=$WHAT
  attempt "$s.direct" "${USER_ENV[@]}" "${CMD[@]}"
  if [[ $RC != 0 || ! -s $OUT/$s.direct.out ]]; then
    show_tail "$OUT/$s.direct.err"
    note "$s" "the direct run (no tapedeck) failed, exit $RC: the harness is broken"
    printf '  FAIL %s: direct run exit %s\n' "$s" "$RC" >&2
  else
    next_run_dir "$s"
    trust_of "$s" "$RUN_DIR"
    attempt "$s.record" "${USER_ENV[@]}" "$TAPEDECK_BIN" record --session "$s" --upstream-ca "$CORP_CA" -- "${CMD[@]}"
    if [[ $RC != 0 ]]; then
      note "$s" "exit $RC: $(client_error "$s.record")"
      printf '  FAIL %s (%s): exit %s under record -- CMD\n' "$s" "$WHAT" "$RC" >&2
      show_tail "$OUT/$s.record.err" 6
    elif ! cmp -s "$OUT/$s.direct.out" "$OUT/$s.record.out"; then
      note "$s" "its output under record differs from the direct run's"
      printf '  FAIL %s (%s): output differs from the direct run\n' "$s" "$WHAT" >&2
    else
      RECS[$s]=1
      ok "$s: $WHAT works under record -- CMD"
    fi
  fi
  SECS[$s]=$((SECONDS - t0))
done

# ---------------------------------------------------------------------------------------
step "6. stop every server; replay each recording $REPLAYS time(s) offline"
for label in fixture pypiserver verdaccio git-server; do stop_server "$label"; done
kill -TERM "$UP_PID" 2>/dev/null || true
wait "$UP_PID" 2>/dev/null || true
# Each server's process is gone. Its port then refuses connections, unless a stage running
# beside this one (they share the machine's free ports) has since been given the same
# port: a plain-HTTP listener there fails curl's TLS handshake (exit 35) instead. What
# must never happen is a TLS server answering (exit 0 or an HTTP error).
for label in fixture pypiserver verdaccio git-server; do
  ! kill -0 "${SERVER_PID[$label]}" 2>/dev/null || fail "$label (pid ${SERVER_PID[$label]}) is still running after it was stopped"
done
! kill -0 "$UP_PID" 2>/dev/null || fail "the upstream (pid $UP_PID) is still running after it was stopped"
reused=()
for url in "$FIXTURE_URL" "$PYPI_URL" "$NPM_URL" "$GIT_URL" "$BASE"; do
  set +e
  curl -sS --max-time 5 -k "$url/" >/dev/null 2>&1
  rc=$?
  set -e
  case $rc in
    7) ;;
    35) reused+=("${url##*:}") ;;
    *) fail "$url still answers after its server was stopped (curl exit $rc)" ;;
  esac
done
ok "every server stopped: the fixture, pypiserver, verdaccio, git and the upstream are gone and their ports refuse connections${reused[*]:+ (port ${reused[*]} since taken by a plain listener of another stage)}"

for s in "${SCENARIOS[@]}"; do
  if ! selected "$s" || ((${RECS[$s]:-0} == 0)); then continue; fi
  t0=$SECONDS
  for k in $(seq "$RECORDINGS"); do
    [[ -f $OUT/$s-r$k.record.out ]] || continue
    for i in $(seq "$REPLAYS"); do
      label="$s-r$k-$i.replay"
      next_run_dir "$s"
      cmd_of "$s" "$RUN_DIR"
      attempt "$label" "$TAPEDECK_BIN" replay --session "$s-r$k" "${ORDER_ARGS[@]}" -- "${CMD[@]}"
      REPS[$s]=$((REPS[$s] + 1))
      n="$(misses "$label")"
      if ((n > 0)) || [[ $RC == 3 ]]; then
        MISS_RUNS[$s]=$((MISS_RUNS[$s] + 1))
        MISS_N[$s]=$((MISS_N[$s] + n))
        note "$s" "$(first_line "$label" 'miss')"
      fi
      if [[ $RC == 0 ]] && cmp -s "$OUT/$s-r$k.record.out" "$OUT/$label.out"; then
        SAME[$s]=$((SAME[$s] + 1))
      else
        note "$s" "replay exit $RC, first difference: $(diff "$OUT/$s-r$k.record.out" "$OUT/$label.out" | grep -m1 '^>' | cut -c3-180 || true)"
      fi
    done
  done
  SECS[$s]=$((SECS[$s] + SECONDS - t0))
  printf '  %-4s %s: %d replays, %d with a false miss (%d misses), %d identical to the recording\n' \
    "$( ((MISS_RUNS[$s] == 0 && SAME[$s] == REPS[$s])) && echo ok || echo FAIL)" "$s" \
    "${REPS[$s]}" "${MISS_RUNS[$s]}" "${MISS_N[$s]}" "${SAME[$s]}" >&2
done

# ---------------------------------------------------------------------------------------
step "7. still caught: the sequential agent with two dependent steps swapped"
SWAPS=(swap-turns swap-tool)
declare -A SWAP_WHAT=([swap-turns]="step 2 (carries step 1's reply) sent before step 1"
  [swap-tool]="step 4 (carries the tool's result) sent before the tool call")
declare -A CAUGHT=()
for s in "${SWAPS[@]}"; do
  selected "$s" || selected sequential-agent || continue
  if [[ ! -f $WORK/sequential-r1.json ]]; then
    note "$s" "no recording of sequential-agent to replay"
    RECS[$s]=0 REPS[$s]=0 CAUGHT[$s]=0
    continue
  fi
  t0=$SECONDS
  RECS[$s]=1 REPS[$s]=0 CAUGHT[$s]=0
  for i in $(seq "$REPLAYS"); do
    label="$s-$i.replay"
    attempt "$label" "$TAPEDECK_BIN" replay --session sequential-agent-r1 "${ORDER_ARGS[@]}" -- \
      "$PYTHON" "$C/sequential_agent.py" --swap "${s#swap-}" "$WORK/sequential-r1.json"
    REPS[$s]=$((REPS[$s] + 1))
    if [[ $RC == 3 ]] && grep -q 'out-of-order' "$OUT/$label.err" "$OUT/$label.out"; then
      CAUGHT[$s]=$((CAUGHT[$s] + 1))
    else
      note "$s" "not caught: replay exit $RC$(grep -q 'out-of-order' "$OUT/$label.err" || echo ', no out-of-order miss')"
    fi
  done
  SECS[$s]=$((SECONDS - t0))
  verdict=ok
  ((CAUGHT[$s] == REPS[$s])) || verdict=FAIL
  [[ $REPLAY_ORDER == any && $verdict == FAIL ]] && verdict=n/a
  printf '  %-4s %s (%s): caught %d of %d (exit 3, out-of-order)\n' \
    "$verdict" "$s" "${SWAP_WHAT[$s]}" "${CAUGHT[$s]}" "${REPS[$s]}" >&2
done

# ---------------------------------------------------------------------------------------
step "8. summary"
FAILED=0
row() { printf '%-17s %-9s %-8s %-23s %-10s %6s  %s\n' "$@"; }
{
  printf '\nclient scenarios: tapedeck %s, replay order %s, %s recording(s) x %s replay(s)\n\n' \
    "$TAPEDECK_BIN" "${REPLAY_ORDER:-default}" "$RECORDINGS" "$REPLAYS"
  row scenario recorded replays "false misses" identical time result
  for s in "${SCENARIOS[@]}"; do
    selected "$s" || continue
    result=ok
    if ((${RECS[$s]} < RECORDINGS || MISS_RUNS[$s] > 0 || SAME[$s] < REPS[$s])); then result=FAIL; fi
    row "$s" "${RECS[$s]}/$RECORDINGS" "${REPS[$s]}" "${MISS_RUNS[$s]} runs (${MISS_N[$s]} misses)" \
      "${SAME[$s]}/${REPS[$s]}" "${SECS[$s]}s" "$result"
    [[ $result == ok ]] || FAILED=1
  done
  for s in "${SWAPS[@]}"; do
    [[ -n ${RECS[$s]:-} ]] || continue
    result=ok
    ((${CAUGHT[$s]:-0} == ${REPS[$s]:-0} && ${REPS[$s]:-0} > 0)) || result=FAIL
    if [[ $REPLAY_ORDER == any && $result == FAIL ]]; then
      result="n/a (--order any matches by key alone)"
    fi
    row "$s" "-" "${REPS[$s]}" "caught ${CAUGHT[$s]:-0}/${REPS[$s]}" "-" "${SECS[$s]:-0}s" "$result"
    [[ $result == FAIL ]] && FAILED=1
  done
  for s in "${TRUSTS[@]}"; do
    [[ -n ${RECS[$s]:-} ]] || continue
    result=ok
    ((RECS[$s] == 1)) || { result=FAIL; FAILED=1; }
    row "$s" "$( ((RECS[$s] == 1)) && echo 1/1 || echo 0/1)" - - - "${SECS[$s]}s" "$result: ${TRUST_WHAT[$s]}"
  done
  if ((${#NOTE[@]})); then
    printf '\nfirst problem seen in each failing row:\n'
    for s in "${SCENARIOS[@]}" "${SWAPS[@]}" "${TRUSTS[@]}"; do
      [[ -n ${NOTE[$s]:-} ]] && printf '  %s: %s\n' "$s" "${NOTE[$s]}"
    done
  fi
  printf '\ntrust rows: %s\n' "the user's CA variables (${USER_CA_ENV[*]%%=*}) point at a corporate bundle before tapedeck runs"
}
printf '\n%s: %s in %ds (%d checks passed)\n' "$NAME" "$( ((FAILED)) && echo FAILED || echo ok)" "$((SECONDS - T0))" "$CHECKS" >&2
exit "$FAILED"
