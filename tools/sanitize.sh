#!/usr/bin/env bash
# Build fastrnn with AddressSanitizer + UndefinedBehaviorSanitizer in a virtual environment of its
# own (build/sanitize-venv) and run the test suite under them. Any report fails the run:
# ASan and UBSan abort at the first error (halt_on_error, -fno-sanitize-recover=undefined).
# Python itself is not instrumented, so the ASan runtime is preloaded; leak detection is off
# (CPython keeps memory alive until exit on purpose). Usage: tools/sanitize.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
venv=build/sanitize-venv
python3 -m venv "$venv"
# shellcheck disable=SC1091
. "$venv/bin/activate"
pip install -q scikit-build-core pybind11 cmeel-eigen numpy pytest pytest-benchmark hypothesis
pip install -q --no-build-isolation -Cbuild-dir=build/sanitize \
  -Ccmake.define.FASTRNN_SANITIZE=ON -Ccmake.build-type=RelWithDebInfo .
# libstdc++ too: Python does not link it, and ASan's __cxa_throw interceptor must find it at start
export LD_PRELOAD="$(g++ -print-file-name=libasan.so) $(g++ -print-file-name=libstdc++.so)"
export ASAN_OPTIONS=detect_leaks=0:halt_on_error=1:abort_on_error=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
python -c "import fastrnn; print('sanitized build:', fastrnn.build_info())"
# the timing and resident-memory tests measure what the sanitizers change on purpose
python -m pytest -p no:cacheprovider -m "not resources" "$@"
