#!/usr/bin/env bash
# Zero-byte bodies with curl, over HTTP/1.1 and HTTP/2: the requests of empty_bodies.py.
# One line per request: protocol, request, status, bytes received, Content-Length, or
# curl's error (exit 18 "transfer closed with N bytes remaining" is a cut body).
# Exit 1 if any curl call failed. Env: FIXTURE_URL; honours HTTPS_PROXY, CURL_CA_BUNDLE.
set -uo pipefail
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
failed=0
for proto in --http1.1 --http2; do
  while read -r method path header; do
    args=(-sS --max-time 30 "$proto" -o "$tmp/body" -D "$tmp/head" -w '%{http_code} %{size_download}')
    if [[ $method == HEAD ]]; then args+=(--head); else args+=(-X "$method"); fi
    [[ -n $header ]] && args+=(-H "$header")
    if out="$(curl "${args[@]}" "$FIXTURE_URL$path" 2>"$tmp/err")"; then
      read -r code size <<<"$out"
      length="$(tr -d '\r' <"$tmp/head" | awk -F': ' 'tolower($1) == "content-length" { v = $2 } END { print v == "" ? "-" : v }')"
      printf 'curl %s: %s %s -> %s, %s bytes, content-length %s\n' "${proto#--}" "$method" "$path" "$code" "$size" "$length"
    else
      failed=1
      printf 'curl %s: %s %s -> error %s\n' "${proto#--}" "$method" "$path" "$(head -c 200 "$tmp/err")"
    fi
  done <<'EOF_REQUESTS'
GET /empty/200
POST /empty/201
PUT /empty/202
GET /nocontent
DELETE /nocontent
GET /etag If-None-Match: "v1"
HEAD /item/7
EOF_REQUESTS
done
exit "$failed"
