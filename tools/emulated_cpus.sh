#!/usr/bin/env bash
# Runs fastrnn on emulated CPUs of lower x86-64 levels than this machine's (qemu-user's TCG):
#   Haswell-noTSX  x86-64-v3 (AVX2, FMA, BMI2; no AVX-512)
#   Nehalem        x86-64-v2 (SSE4.2, POPCNT; no AVX)
#   core2duo       below x86-64-v2 (SSSE3, no SSE4.1): no variant runs there
# On each of the first two: the variant chosen at import is that level, FASTRNN_ISA=x86-64-v4
# (and -v4-bf16, -v4-amx when compiled) is an ImportError naming the missing features (not
# SIGILL), and a forward and backward of every cell (float32 and float64, one and two
# bidirectional layers) plus a Linear layer and the cross-entropy match the NumPy reference: the
# variant's kernels run there without an illegal instruction. On the Haswell model the x86-64-v2
# variant is also forced (FASTRNN_ISA) and run. On core2duo, loading the module must give the
# ImportError "this CPU cannot run any of the kernel variants" (the code compiled for the
# baseline runs there; numpy does not, its own baseline is x86-64-v2, so the module is loaded by
# itself). TCG emulates neither AVX-512 nor AMX: the x86-64-v4, -v4-bf16 and -v4-amx variants
# are not run here (Intel SDE could: -skx, -cpx, -spr), only refused; tests/test_isa.py runs them
# natively.
#
# Needs qemu-x86_64 >= 7.2 (Debian: apt-get install qemu-user). The Python is the one that runs
# this script (PYTHON, or python3 on PATH: a venv where fastrnn is installed). About 30-60 s.
# Usage: tools/emulated_cpus.sh            exit status 0 when every check passes
set -euo pipefail
cd "$(dirname "$0")/.."

unset FASTRNN_ISA  # the automatic choice is what is checked first
QEMU=${QEMU:-qemu-x86_64}
PY=${PYTHON:-$(command -v python3)}
if ! command -v "$QEMU" >/dev/null; then
  echo "emulated_cpus: $QEMU not found (Debian: apt-get install qemu-user)" >&2
  exit 2
fi
if [ "$(uname -m)" != x86_64 ]; then
  echo "emulated_cpus: runs x86-64 code only" >&2
  exit 2
fi
# TCG leaves out a few features of the models it does not emulate (tsc-deadline, invpcid, ...):
# it says so on stderr, once per run; those lines are dropped
run() {  # run CPU ARGS...: the Python under the emulated CPU
  local cpu=$1
  shift
  "$QEMU" -cpu "$cpu" "$PY" "$@" 2> >(grep -v "TCG doesn't support requested feature" >&2)
}

check_py=$(mktemp)
trap 'rm -f "$check_py"' EXIT
cat >"$check_py" <<'EOF'
"""Under an emulated CPU: the chosen variant, and every cell's kernels against the reference."""
import sys
import time

import numpy as np

import fastrnn
from fastrnn import losses
from fastrnn import reference as R

expected = sys.argv[1]
t0 = time.monotonic()
info = fastrnn.build_info()
assert info["isa"] == expected, f"isa {info['isa']!r}, expected {expected!r}: {info}"
print(f"  isa {info['isa']}, available {info['isa_available']}")

rng = np.random.default_rng(0)
TOL = {np.float32: 2e-4, np.float64: 1e-10}


def close(a, b, dtype, what):
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    assert a.shape == b.shape, f"{what}: shape {a.shape} != {b.shape}"
    tol = TOL[dtype] * max(1.0, float(np.abs(b).max()))
    err = float(np.abs(a - b).max())
    assert err <= tol, f"{what}: max error {err:.3g} > {tol:.3g}"


CELLS = [  # layer, its cell name in the reference
    (lambda **k: fastrnn.RNN(**k), "rnn_tanh"),
    (lambda **k: fastrnn.RNN(nonlinearity="relu", **k), "rnn_relu"),
    (lambda **k: fastrnn.LSTM(**k), "lstm"),
    (lambda **k: fastrnn.GRU(**k), "gru"),
    (lambda **k: fastrnn.GRU(reset_after=False, **k), "gru_reset_before"),
]
T, B, I, H = 6, 5, 20, 33  # rows and depths past whole SIMD packets, at every level
n = 0
for dtype in (np.float32, np.float64):
    for make, cell in CELLS:
        for layers, bidir in ((1, False), (2, True)):
            layer = make(input_size=I, hidden_size=H, num_layers=layers,
                         bidirectional=bidir, dtype=dtype, seed=1)
            D = 2 if bidir else 1
            x = rng.standard_normal((T, B, I)).astype(dtype)
            h0 = rng.standard_normal((layers * D, B, H)).astype(dtype)
            lstm = cell == "lstm"
            c0 = rng.standard_normal((layers * D, B, H)).astype(dtype) if lstm else None
            y, state = layer(x, (h0, c0) if lstm else h0)
            dy = rng.standard_normal(y.shape).astype(dtype)
            dx, dstate = layer.backward(dy, None)

            sd = layer.state_dict()
            params = []
            for k in range(layers * D):
                sfx = f"l{k // D}" + ("_reverse" if k % D else "")
                params.append(tuple(sd[f"{w}_{sfx}"].astype(np.float64)
                                    for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
                              + (None,))
            c0r = None if c0 is None else c0.astype(np.float64)
            yr, hr, cr, cache = R.stack_forward(cell, x.astype(np.float64), params,
                                                h0.astype(np.float64), c0r,
                                                num_layers=layers, bidirectional=bidir)
            g = R.stack_backward(cache, dy.astype(np.float64))
            what = f"{cell} {np.dtype(dtype).name} L{layers}{'x2' if bidir else ''}"
            close(y, yr, dtype, what + " y")
            close(state[0] if lstm else state, hr, dtype, what + " h_n")
            if lstm:
                close(state[1], cr, dtype, what + " c_n")
                close(dstate[0], g["dh0"], dtype, what + " dh0")
                close(dstate[1], g["dc0"], dtype, what + " dc0")
            else:
                close(dstate, g["dh0"], dtype, what + " dh0")
            close(dx, g["dx"], dtype, what + " dx")
            for k in range(layers * D):
                sfx = f"l{k // D}" + ("_reverse" if k % D else "")
                for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    close(layer.grads[f"{w}_{sfx}"], g["params"][k][w], dtype, f"{what} d{w}_{sfx}")
            n += 1

    # the training kernels: a Linear layer and the fused softmax cross-entropy
    lin = fastrnn.Linear(H, 11, dtype=dtype, seed=2)
    z = rng.standard_normal((B * T, H)).astype(dtype)
    logits = lin(z)
    close(logits, R.linear_forward(z.astype(np.float64), lin.weight.astype(np.float64),
                                   lin.bias.astype(np.float64)), dtype, "linear")
    targets = rng.integers(0, 11, B * T)
    loss, dlogits = losses.cross_entropy(logits, targets)
    loss_r, dlogits_r = R.softmax_cross_entropy(logits.astype(np.float64), targets)
    close(loss, loss_r, dtype, "cross_entropy loss")
    close(dlogits, dlogits_r, dtype, "cross_entropy dlogits")
    dz = lin.backward(dlogits)
    dz_r, dw_r, db_r = R.linear_backward(z.astype(np.float64), lin.weight.astype(np.float64),
                                          dlogits.astype(np.float64), True)
    close(dz, dz_r, dtype, "linear dx")
    close(lin.grads["weight"], dw_r, dtype, "linear dweight")
    close(lin.grads["bias"], db_r, dtype, "linear dbias")
print(f"  {n} layer configurations + Linear/cross-entropy match the reference "
      f"({time.monotonic() - t0:.1f} s)")
EOF

status=0
fail() { echo "FAIL: $*" >&2; status=1; }

isa_refused() {  # cpu isa feature...: FASTRNN_ISA=isa must be an ImportError naming each feature
  local cpu=$1 isa=$2 out f
  shift 2
  out=$(FASTRNN_ISA=$isa run "$cpu" -c '
import sys
try:
    import fastrnn
    fastrnn.build_info()
except ImportError as e:
    print("ImportError:", e)
    sys.exit(0)
print("no ImportError")
sys.exit(1)' 2>&1) || { fail "$cpu: FASTRNN_ISA=$isa: $out"; return; }
  for f in "$@"; do
    if [[ $out != *"ImportError"*"$f"* ]]; then
      fail "$cpu: FASTRNN_ISA=$isa did not name the missing feature $f: $out"
      return
    fi
  done
  echo "  FASTRNN_ISA=$isa: ${out:0:160}..."
}

# the variants above x86-64-v3 that this build has, and the features each must be refused for
compiled=$("$PY" -c 'import fastrnn; print(" ".join(fastrnn.build_info()["isa_compiled"]))')
refused=("x86-64-v4 avx512f")
if [[ " $compiled " == *" x86-64-v4-bf16 "* ]]; then
  refused+=("x86-64-v4-bf16 avx512f avx512_bf16")
fi
if [[ " $compiled " == *" x86-64-v4-amx "* ]]; then
  refused+=("x86-64-v4-amx avx512f avx512_bf16 amx_tile amx_bf16 amx_int8")
fi

start=$SECONDS
for pair in "Nehalem x86-64-v2" "Haswell-noTSX x86-64-v3"; do
  read -r cpu isa <<<"$pair"
  t=$SECONDS
  echo "== $cpu (expect $isa)"
  run "$cpu" "$check_py" "$isa" || fail "$cpu: the kernels under $isa"
  for r in "${refused[@]}"; do
    # shellcheck disable=SC2086  # the variant and its features: words on purpose
    isa_refused "$cpu" $r
  done
  if [ "$isa" = x86-64-v3 ]; then
    echo "  forced FASTRNN_ISA=x86-64-v2:"
    FASTRNN_ISA=x86-64-v2 run "$cpu" "$check_py" x86-64-v2 || fail "$cpu: forced x86-64-v2"
  fi
  echo "  ($((SECONDS - t)) s)"
done

echo "== core2duo (below x86-64-v2: expect an ImportError when loading the module)"
core=$("$PY" -c 'import importlib.util as u; print(u.find_spec("fastrnn._core").origin)')
out=$(run core2duo -c '
import importlib.util, sys
spec = importlib.util.spec_from_file_location("fastrnn._core", sys.argv[1])
try:
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
except ImportError as e:
    print("ImportError:", e)
    sys.exit(0)
print("loaded")
sys.exit(1)' "$core" 2>&1) || true
if [[ $out == "ImportError: fastrnn: this CPU cannot run any of the kernel variants"* ]]; then
  echo "  ${out:0:160}..."
else
  fail "core2duo: expected an ImportError, got: $out"
fi

echo "total $((SECONDS - start)) s: $([ $status = 0 ] && echo OK || echo FAILED)"
exit $status
