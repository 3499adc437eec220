# Sourced by scripts/test.sh, examples/clients.sh and examples/phoenix.sh:
#
#   pip_install VENV_PYTHON ARGS...   what `VENV_PYTHON -m pip install ARGS...` installs,
#                                     installed by uv when uv can be had
#
# Installing Arize Phoenix with pip took 144 s here (116 s of it CPU: resolving, unpacking
# and compiling 850 MB of packages); uv installs the same pins in 20 s. uv (pinned below)
# is itself installed with pip, once, into a venv of its own (UV_VENV, default
# target/uv-venv); its cache (UV_CACHE_DIR, default target/uv-cache: what the venvs share
# is fetched once) is on the venvs' file system, which uv links from. When uv cannot be
# installed (no uv wheel for this platform, say), pip does the work and a line says so.
# TAPEDECK_PIP=pip forces pip.
# uv reads neither pip.conf nor PIP_* variables: an index or find-links given to pip that
# way is passed on (PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, PIP_FIND_LINKS), and uv takes its
# certificates from SSL_CERT_FILE as pip takes them from PIP_CERT.
TAPEDECK_UV_VERSION=0.13.9

_pip_sh_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Prints the path of a working uv, installing it first if need be; fails when there is none.
uv_bin() {
  local venv="${UV_VENV:-$_pip_sh_root/target/uv-venv}"
  [[ ${TAPEDECK_PIP:-} == pip ]] && return 1
  if [[ ! -x $venv/bin/uv ]] || [[ $("$venv/bin/uv" --version 2>/dev/null) != "uv $TAPEDECK_UV_VERSION"* ]]; then
    rm -rf "$venv"
    { "${PYTHON_FOR_VENV:-python3}" -m venv "$venv" \
      && "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "uv==$TAPEDECK_UV_VERSION"; } >&2 \
      || { rm -rf "$venv"; return 1; }
  fi
  printf '%s\n' "$venv/bin/uv"
}

pip_install() {
  local python=$1 uv
  shift
  if uv="$(uv_bin)"; then
    local extra=() d
    [[ -n ${PIP_INDEX_URL:-} ]] && extra+=(--default-index "$PIP_INDEX_URL")
    for d in ${PIP_EXTRA_INDEX_URL:-}; do extra+=(--index "$d"); done
    for d in ${PIP_FIND_LINKS:-}; do [[ -e $d || $d == *://* ]] && extra+=(--find-links "$d"); done
    "$uv" pip install --quiet --cache-dir "${UV_CACHE_DIR:-$_pip_sh_root/target/uv-cache}" \
      --python "$python" "${extra[@]}" "$@"
  else
    if [[ ${TAPEDECK_PIP:-} != pip ]]; then
      echo "pip_install: no uv $TAPEDECK_UV_VERSION (see above); installing with pip" >&2
    fi
    "$python" -m pip install --quiet --disable-pip-version-check "$@"
  fi
}
