#!/usr/bin/env bash
# `npm install` of the generated dependency tree (make_npm_tree.py) from the local
# verdaccio into a fresh folder with a fresh npm cache, so every packument and tarball
# is fetched (no lockfile: npm resolves the tree and fetches concurrently).
# Prints the tree hash of node_modules (tree_hash.py) and the number of packages in it;
# npm's own output (with its timings) goes to DIR/npm.log, shown on failure.
#
# Usage: npm_install.sh DIR APP_PACKAGE_JSON     env NPM_REGISTRY, PYTHON
set -euo pipefail
dir=$1 app=$2
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
rm -rf "$dir"
mkdir -p "$dir/app"
cp "$app" "$dir/app/package.json"
cd "$dir/app"
if ! npm install --registry "$NPM_REGISTRY" --cache "$dir/cache" --no-audit --no-fund \
  --no-update-notifier --loglevel=warn >"$dir/npm.log" 2>&1; then
  tail -n 20 "$dir/npm.log" >&2
  exit 1
fi
"$PYTHON" "$here/tree_hash.py" node_modules
printf 'package.json files: %s\n' "$(find node_modules -name package.json | wc -l)"
