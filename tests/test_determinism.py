"""Results are bit-identical whatever the memory addresses of the arrays.

Eigen vectorises dynamic-size expressions by peeling a scalar head up to the first aligned address;
where the scalar and SIMD code round differently (sigmoid in float64, small coefficient-based
products) results would depend on the allocator. The kernels avoid both; this checks it by placing
the same data at every offset within a 64-byte line.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from fastrnn import functional as F
from fastrnn.losses import cross_entropy
from helpers import CELLS, DTYPES


def at_offset(a: np.ndarray, offset: int) -> np.ndarray:
    """A C-contiguous copy of `a` whose data starts `offset` elements into a fresh buffer."""
    buf = np.empty(a.size + offset, a.dtype)
    out = buf[offset:].reshape(a.shape)
    out[...] = a
    return out


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", [(5, 3, 4, 6), (4, 1, 3, 37), (3, 5, 33, 70)], ids=str)
@pytest.mark.parametrize("cell", CELLS)
def test_results_do_not_depend_on_addresses(cell: str, dtype: Any, shape: tuple[int, ...]) -> None:
    T, B, I, H = shape
    G = F.num_gates(cell)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    w = rng.standard_normal((G * H, I)).astype(dtype)
    u = (0.3 * rng.standard_normal((G * H, H))).astype(dtype)
    b = rng.standard_normal(G * H).astype(dtype)
    dy = rng.standard_normal((T, B, H)).astype(dtype)
    seen = set()
    for off in range(64 // np.dtype(dtype).itemsize):
        args = [at_offset(a, off) for a in (x, w, u, b, b)]
        fw = F.forward(cell, *args)
        bw = F.backward(cell, *args, fw.workspace, at_offset(dy, off))
        seen.add(b"".join(a.tobytes() for a in (fw.y, *bw) if a is not None))
    assert len(seen) == 1


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("classes", [5, 77, 256])
def test_cross_entropy_does_not_depend_on_addresses(dtype: Any, classes: int) -> None:
    # the softmax's exp and its row sum once changed in the last bits with the rows' alignment
    rng = np.random.default_rng(1)
    logits = (3 * rng.standard_normal((64, classes))).astype(dtype)
    targets = rng.integers(0, classes, 64)
    seen = set()
    for off in range(64 // np.dtype(dtype).itemsize):
        loss, d = cross_entropy(at_offset(logits, off), targets)
        seen.add((loss, d.tobytes()))
    assert len(seen) == 1


@pytest.mark.parametrize("cell", CELLS)
def test_workspaces_reuse_memory_but_never_share_it(cell: str) -> None:
    # training workspaces come from the kernels' block cache: a workspace that died is reused
    # by the next forward of those sizes, one still alive never is
    T, B, I, H = 30, 8, 16, 64
    G = F.num_gates(cell)
    rng = np.random.default_rng(2)
    w = [rng.standard_normal((G * H, I)), 0.3 * rng.standard_normal((G * H, H))]
    w = [a.astype(np.float32) for a in w] + [rng.standard_normal(G * H).astype(np.float32)] * 2
    xs = [rng.standard_normal((T, B, I)).astype(np.float32) for _ in range(3)]
    dy = rng.standard_normal((T, B, H)).astype(np.float32)

    def result(fw: F.ForwardResult, x: np.ndarray) -> bytes:
        bw = F.backward(cell, x, *w, fw.workspace, dy)
        return b"".join(a.tobytes() for a in (fw.y, *bw) if a is not None)

    alone = [result(F.forward(cell, x, *w), x) for x in xs]  # each workspace dies, then reused
    alive = [F.forward(cell, x, *w) for x in xs]  # all alive at once
    ptrs = {fw.workspace.__array_interface__["data"][0] for fw in alive}
    assert len(ptrs) == 3
    assert [result(fw, x) for fw, x in zip(alive, xs, strict=True)] == alone
