#!/usr/bin/env bash
# `pip install` of several of the generated wheels (make_wheels.py) from the local
# pypiserver into a fresh venv, with no cache and no .pyc files (they embed timestamps),
# so every index page and wheel is fetched. Prints the tree hash of the installed files
# (site-packages without __pycache__) and the installed distributions.
#
# Usage: pip_install.sh DIR        env PYPI_INDEX (…/simple/), PIP (a pip to run), PYTHON_FOR_VENV
set -euo pipefail
dir=$1
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
rm -rf "$dir"
"$PYTHON_FOR_VENV" -m venv --without-pip "$dir/venv"
if ! "$PIP" --python "$dir/venv/bin/python" install --index-url "$PYPI_INDEX" --no-cache-dir \
  --no-compile --disable-pip-version-check --progress-bar off \
  tdk-cli tdk-report tdk-plugins tdk-extras >"$dir/pip.log" 2>&1; then
  tail -n 20 "$dir/pip.log" >&2
  exit 1
fi
site="$(echo "$dir"/venv/lib/python*/site-packages)"
"$PYTHON_FOR_VENV" "$here/tree_hash.py" --exclude __pycache__ "$site"
for info in "$site"/tdk_*.dist-info; do printf 'installed: %s\n' "${info##*/}"; done
