# Sourced by tools/cross_aarch64.sh and tools/baseline_x86.sh (not run by itself): the build tools
# of the C++ kernel test, and small helpers. On return:
#   FASTRNN_ROOT      the repository
#   FASTRNN_PY        a Python with cmeel-eigen (CMakeLists.txt asks it where Eigen is)
#   PATH              has cmake (>= 3.18) and ninja
# When the Python on PATH (or $PYTHON) lacks any of cmake, ninja and cmeel-eigen, they are
# pip-installed into a throwaway virtual environment, build/tools-venv (kept for the next run).
# shellcheck shell=bash

FASTRNN_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

log() { printf '\n==> %s\n' "$*"; }

# Runs a command as root: directly when already root (CI containers), else through sudo.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  else
    sudo "$@"
  fi
}

# apt-get install of the given packages (apt-get update first), non-interactive; its output is
# shown only when it fails.
apt_install() {
  log "apt-get update; apt-get install $*"
  local out
  out=$(mktemp)
  if ! { as_root apt-get update -qq &&
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"; } \
    >"$out" 2>&1; then
    cat "$out" >&2
    rm -f "$out"
    echo "error: apt-get install $* failed" >&2
    return 1
  fi
  rm -f "$out"
}

_has_cmeel_eigen() {
  "$1" -c "import importlib.metadata as m; m.distribution('cmeel-eigen')" >/dev/null 2>&1
}

_cmake_ok() {  # cmake on PATH, version >= 3.18
  command -v cmake >/dev/null 2>&1 || return 1
  local major minor
  read -r major minor < <(cmake --version 2>/dev/null | head -n1 |
    sed -E 's/^cmake version ([0-9]+)\.([0-9]+).*/\1 \2/; t; s/.*/0 0/')
  [ "${major:-0}" -gt 3 ] || { [ "${major:-0}" -eq 3 ] && [ "${minor:-0}" -ge 18 ]; }
}

fastrnn_build_env() {
  local py="${PYTHON:-}"
  if [ -z "$py" ]; then
    py=$(command -v python3 || command -v python || true)
  fi
  if [ -z "$py" ]; then
    echo "error: no Python found (needed for cmeel-eigen, cmake and ninja)" >&2
    return 1
  fi
  if _has_cmeel_eigen "$py" && _cmake_ok && command -v ninja >/dev/null 2>&1; then
    FASTRNN_PY="$py"
  else
    local venv="$FASTRNN_ROOT/build/tools-venv"
    if [ ! -x "$venv/bin/python" ]; then
      log "making $venv (cmake, ninja, cmeel-eigen)"
      mkdir -p "$FASTRNN_ROOT/build"
      if ! "$py" -m venv "$venv"; then
        # Debian's Python without ensurepip: python3-venv provides it
        rm -rf "$venv"
        apt_install python3-venv
        "$py" -m venv "$venv"
      fi
    fi
    if ! _has_cmeel_eigen "$venv/bin/python" || [ ! -x "$venv/bin/cmake" ] || [ ! -x "$venv/bin/ninja" ]; then
      "$venv/bin/python" -m pip install -q --disable-pip-version-check "cmake>=3.18" ninja "cmeel-eigen>=3.4,<3.5"
    fi
    FASTRNN_PY="$venv/bin/python"
    PATH="$venv/bin:$PATH"
  fi
  export PATH FASTRNN_PY
  echo "python: $FASTRNN_PY; $(cmake --version | head -n1); ninja $(ninja --version)"
}

# Seconds since the epoch, for the timings the scripts print.
now() { date +%s; }
