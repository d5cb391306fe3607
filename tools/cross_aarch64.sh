#!/usr/bin/env bash
# Cross-compile the C++ core and its kernel test (tests/cpp/kernel_test.cpp) for aarch64 and run
# the test under user-mode emulation (qemu-aarch64): the "neon" kernel variant, which no x86
# machine runs otherwise. Usage: tools/cross_aarch64.sh [test args, e.g. a seed]
#
# Installs what is missing: g++-aarch64-linux-gnu and qemu-user with apt-get (as root, or through
# sudo), cmake, ninja and cmeel-eigen with pip into build/tools-venv when the Python on PATH lacks
# them (tools/build_env.sh). Builds into build/aarch64 (FASTRNN_PYTHON=OFF, FASTRNN_BUILD_TESTS=ON,
# the default dispatch mode: one "neon" variant on aarch64), then runs the test with
# OMP_NUM_THREADS=1 and =2. Runnable from any directory and again (incremental). Extra CMake
# arguments: FASTRNN_CMAKE_ARGS="-DFASTRNN_WERROR=ON ...". Exits non-zero on any failure.
# Time (2 cores): the apt-get install ~40 s the first time, the build ~20 s, each test run ~50 s
# under qemu (about 2/3 of it the reference's finite differences, which do not depend on the CPU).
set -euo pipefail
# shellcheck source=tools/build_env.sh
. "$(dirname "${BASH_SOURCE[0]}")/build_env.sh"

root="$FASTRNN_ROOT"
build="$root/build/aarch64"
sysroot=/usr/aarch64-linux-gnu
t_all=$(now)

missing=()
command -v aarch64-linux-gnu-g++ >/dev/null 2>&1 || missing+=(g++-aarch64-linux-gnu)
command -v qemu-aarch64 >/dev/null 2>&1 || missing+=(qemu-user)
if [ "${#missing[@]}" -gt 0 ]; then
  apt_install "${missing[@]}"
fi
echo "cross compiler: $(aarch64-linux-gnu-g++ --version | head -n1)"
echo "emulator: $(qemu-aarch64 --version | head -n1)"

fastrnn_build_env

log "configure $build"
t=$(now)
# shellcheck disable=SC2086  # FASTRNN_CMAKE_ARGS: words on purpose
cmake -S "$root" -B "$build" -G Ninja \
  -DCMAKE_TOOLCHAIN_FILE="$root/tools/aarch64-linux-gnu.cmake" \
  -DCMAKE_BUILD_TYPE=Release \
  -DFASTRNN_PYTHON=OFF -DFASTRNN_BUILD_TESTS=ON -DFASTRNN_ARCH=dispatch \
  -DPython_EXECUTABLE="$FASTRNN_PY" ${FASTRNN_CMAKE_ARGS:-}
log "build"
cmake --build "$build" --target fastrnn_kernel_test -j "$(nproc 2>/dev/null || echo 2)"
t_build=$(($(now) - t))
aarch64-linux-gnu-readelf -h "$build/fastrnn_kernel_test" | grep -E 'Machine:' || true

run_test() {  # OMP_NUM_THREADS, then the test's arguments
  local threads=$1
  shift
  log "qemu-aarch64: fastrnn_kernel_test, OMP_NUM_THREADS=$threads"
  local t0
  t0=$(now)
  OMP_NUM_THREADS=$threads qemu-aarch64 -L "$sysroot" "$build/fastrnn_kernel_test" "$@"
  echo "(OMP_NUM_THREADS=$threads: $(($(now) - t0)) s)"
}
t=$(now)
run_test 1 "$@"
run_test 2 "$@"
t_run=$(($(now) - t))

log "aarch64: passed (configure + build ${t_build} s, tests under qemu ${t_run} s, total $(($(now) - t_all)) s)"
