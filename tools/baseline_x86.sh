#!/usr/bin/env bash
# Build the C++ core and its kernel test (tests/cpp/kernel_test.cpp) natively as single-variant
# x86-64 builds and run them: the compiler-default baseline (FASTRNN_ARCH=none: SSE2 only, the
# variant named "x86-64", which the dispatch build does not have) and x86-64-v2 with its own
# -march (FASTRNN_ARCH=x86-64-v2). Usage: tools/baseline_x86.sh [test args, e.g. a seed]
#
# Build directories: build/x86-64-baseline and build/x86-64-v2. cmake, ninja and cmeel-eigen come
# from the Python on PATH or are pip-installed into build/tools-venv (tools/build_env.sh).
# Runnable from any directory and again (incremental). Extra CMake arguments:
# FASTRNN_CMAKE_ARGS="...". Exits non-zero on any failure; on a machine that is not x86-64 it
# builds nothing and says so.
set -euo pipefail
# shellcheck source=tools/build_env.sh
. "$(dirname "${BASH_SOURCE[0]}")/build_env.sh"

root="$FASTRNN_ROOT"
case "$(uname -m)" in
  x86_64 | amd64) ;;
  *)
    echo "baseline_x86.sh: skipped, this machine is $(uname -m), not x86-64"
    exit 0
    ;;
esac
t_all=$(now)
fastrnn_build_env

build_and_run() {  # build directory name, FASTRNN_ARCH, then the test's arguments
  local name=$1 arch=$2
  shift 2
  local build="$root/build/$name" t0
  log "$name: configure and build (FASTRNN_ARCH=$arch)"
  t0=$(now)
  # shellcheck disable=SC2086  # FASTRNN_CMAKE_ARGS: words on purpose
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DFASTRNN_PYTHON=OFF -DFASTRNN_BUILD_TESTS=ON -DFASTRNN_ARCH="$arch" \
    -DPython_EXECUTABLE="$FASTRNN_PY" ${FASTRNN_CMAKE_ARGS:-}
  cmake --build "$build" --target fastrnn_kernel_test -j "$(nproc 2>/dev/null || echo 2)"
  echo "($name: configure + build $(($(now) - t0)) s)"
  log "$name: fastrnn_kernel_test"
  t0=$(now)
  "$build/fastrnn_kernel_test" "$@"
  echo "($name: test $(($(now) - t0)) s)"
}

build_and_run x86-64-baseline none "$@"
build_and_run x86-64-v2 x86-64-v2 "$@"
log "x86-64 baseline and v2: passed ($(($(now) - t_all)) s)"
