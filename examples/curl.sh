#!/usr/bin/env bash
# A few curl calls against an LLM-shaped API and a tool endpoint; prints the bodies.
#
#   BASE_URL   the server, e.g. https://localhost:8443 (default)
#   OPENAI_API_KEY  sent as "Authorization: Bearer ..." (default sk-test-not-a-real-key)
#
# curl honours HTTPS_PROXY and CURL_CA_BUNDLE (or pass --cacert via CURL_FLAGS).
# Output is deterministic: bodies only, one per call, each followed by a newline.
set -euo pipefail

BASE_URL="${BASE_URL:-https://localhost:8443}"
KEY="${OPENAI_API_KEY:-sk-test-not-a-real-key}"
# shellcheck disable=SC2206
EXTRA=(${CURL_FLAGS:-})

c() { curl --fail-with-body --silent --show-error "${EXTRA[@]}" "$@"; echo; }

echo "== chat completion"
c "$BASE_URL/v1/chat/completions" \
  -H "Authorization: Bearer $KEY" \
  -H "Content-Type: application/json" \
  -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello to the tape deck"}]}'

echo "== weather tool"
c "$BASE_URL/weather?city=Paris"

echo "== server-sent events"
c -N "$BASE_URL/sse?n=3&gap_ms=50"

echo "== streamed chat completion"
c -N "$BASE_URL/v1/chat/completions" \
  -H "Authorization: Bearer $KEY" \
  -H "Content-Type: application/json" \
  -d '{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Stream it"}]}'
