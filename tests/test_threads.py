"""Threads: fastrnn's own thread count, results bit-identical for every thread count, and
concurrent Python threads bit-identical to running one after another."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import fastrnn
from fastrnn import functional as F
from helpers import make_problem, stack_params


@pytest.fixture
def restore_threads() -> Iterator[None]:
    n = fastrnn.get_num_threads()
    yield
    fastrnn.set_num_threads(n)


def run_all(cell: str, shape: tuple[int, ...], **opts: Any) -> bytes:
    T, B, I, H = shape
    rng = np.random.default_rng(0)
    D = 2 if opts.get("bidirectional") else 1
    L = opts.get("num_layers", 1)
    P = opts.get("proj_size", 0)
    Hs = P or H
    params = stack_params(
        rng, cell, I, H, num_layers=L, num_directions=D, proj_size=P, dtype=np.float32
    )
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    dy = rng.standard_normal((T, B, D * Hs)).astype(np.float32)
    fw = F.stack_forward(cell, x, params, **opts)
    bw = F.stack_backward(cell, x, params, fw.workspace, dy, **opts)
    arrays = [fw.y, fw.h_n, bw.dx, bw.dh0] + [a for g in bw.grads for a in g if a is not None]
    return b"".join(a.tobytes() for a in arrays)


# shapes whose products Eigen's own threading computed differently for 1 and 2 threads; batch 1
# and 4 with few steps (the products read the weights unpacked), H not a whole number of packets
SHAPES = [
    (20, 64, 1024, 256), (10, 32, 512, 1024), (30, 1, 128, 256), (5, 300, 700, 130),
    (1, 1, 200, 300), (4, 1, 50, 200), (3, 4, 130, 200),
]  # fmt: skip


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("cell", ["lstm", "gru", "gru_reset_before", "rnn_tanh"])
def test_bit_identical_for_every_thread_count(
    cell: str, shape: tuple[int, ...], restore_threads: None
) -> None:
    results = set()
    for n in (1, 2, 3, 4):
        fastrnn.set_num_threads(n)
        results.add(run_all(cell, shape))
    assert len(results) == 1


def test_bit_identical_stacks_for_every_thread_count(restore_threads: None) -> None:
    opts = {"num_layers": 2, "bidirectional": True, "lengths": np.array([9, 3, 0, 7] * 8)}
    results = set()
    for n in (1, 2, 4):
        fastrnn.set_num_threads(n)
        results.add(run_all("lstm", (9, 32, 64, 96), **opts))
    assert len(results) == 1


@pytest.mark.parametrize("proj_size", [40, 130])
@pytest.mark.parametrize("batch", [18, 1])
def test_bit_identical_projection_for_every_thread_count(
    proj_size: int, batch: int, restore_threads: None
) -> None:
    # the projection's units are split among the threads apart from the cell's (two barriers
    # per step); H = 200 and proj_size = 130 are not whole SIMD packets; batch 1 with 3 steps
    # runs the unpacked products
    T = 12 if batch > 1 else 3
    lengths = np.array([12, 5, 1] * 6) if batch > 1 else np.array([3])
    opts = {"proj_size": proj_size, "bidirectional": True, "lengths": lengths}
    results = set()
    for n in (1, 2, 3, 4):
        fastrnn.set_num_threads(n)
        results.add(run_all("lstm", (T, batch, 72, 200), **opts))
    assert len(results) == 1


def test_set_and_get(restore_threads: None) -> None:
    fastrnn.set_num_threads(3)
    assert fastrnn.get_num_threads() == 3
    with pytest.raises(ValueError, match="n: the number of threads must be >= 1"):
        fastrnn.set_num_threads(0)
    with pytest.raises(TypeError, match="n: expected an int"):
        fastrnn.set_num_threads(2.0)  # type: ignore[arg-type]
    assert fastrnn.get_num_threads() == 3


def test_default_follows_omp_num_threads() -> None:
    code = "import fastrnn; print(fastrnn.get_num_threads())"
    env = {**os.environ, "OMP_NUM_THREADS": "3"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "3"
    env.pop("OMP_NUM_THREADS")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert int(out.stdout) == len(os.sched_getaffinity(0))


def test_independent_of_other_pools(restore_threads: None) -> None:
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    try:
        fastrnn.set_num_threads(1)
        assert torch.get_num_threads() == before
        torch.set_num_threads(1)
        fastrnn.set_num_threads(2)
        assert torch.get_num_threads() == 1 and fastrnn.get_num_threads() == 2
    finally:  # torch's thread count as it was, whatever happened (later tests run with it)
        torch.set_num_threads(before)


def test_eight_python_threads_equal_serial() -> None:
    """8 threads, each with its own layer, forward+backward concurrently: bit-identical to
    running the same work one after another."""
    kinds = [fastrnn.LSTM, fastrnn.GRU, fastrnn.RNN, fastrnn.LSTM] * 2

    def work(i: int) -> bytes:
        m = kinds[i](16, 24, num_layers=2, bidirectional=i % 2 == 1, seed=i)
        x = np.random.default_rng(i).standard_normal((30, 8, 16)).astype(np.float32)
        out = []
        for _ in range(5):
            y, _ = m(x, lengths=np.array([30, 5, 17, 30, 1, 9, 22, 30]))
            dx, _ = m.backward(np.ones_like(y))
            out += [y.tobytes(), dx.tobytes(), *[g.tobytes() for g in m.grads.values()]]
        return b"".join(out)

    serial = [work(i) for i in range(8)]
    concurrent: list[bytes | None] = [None] * 8

    def run(i: int) -> None:
        concurrent[i] = work(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert concurrent == serial


def test_one_layer_in_two_threads_is_a_clear_error() -> None:
    """A layer holds one forward; a backward in another thread than its forward is refused."""
    m = fastrnn.GRU(4, 6)
    x = np.zeros((3, 2, 4), np.float32)
    y, _ = m(x)
    errors: list[BaseException] = []

    def other() -> None:
        try:
            m.backward(np.ones_like(y))
        except RuntimeError as e:
            errors.append(e)

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert errors and "another thread" in str(errors[0])
    m.backward(np.ones_like(y))  # the forward's own thread still can


def test_concurrent_backward_on_one_workspace_runs_once() -> None:
    """Two threads calling backward on one workspace at once: one runs, the other is told the
    workspace is already consumed. (Found in review; failed before its fix.)"""
    p = make_problem("gru", 4, 3, 8, 16)
    for _ in range(50):
        fw = F.forward("gru", p.x, *p.params)
        barrier = threading.Barrier(2)
        outcomes: list[Any] = []

        def run(ws: Any = fw.workspace, out: list[Any] = outcomes, barrier: Any = barrier) -> None:
            barrier.wait()
            try:
                F.backward("gru", p.x, *p.params, ws, p.dy)
                out.append("ok")
            except ValueError as e:
                out.append(str(e))

        threads = [threading.Thread(target=run) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(outcomes)[0] == "ok"
        assert "already consumed" in sorted(outcomes)[1]


def test_thread_count_is_capped() -> None:
    """An absurd thread count is refused (a backward with 10**6 threads once crashed in
    libgomp); the cap itself runs, and a larger OMP_NUM_THREADS default is cut to it."""
    before = fastrnn.get_num_threads()
    cap = fastrnn.functional.MAX_THREADS
    with pytest.raises(ValueError, match=rf"n: at most {cap} threads"):
        fastrnn.set_num_threads(10**6)
    assert fastrnn.get_num_threads() == before
    code = (
        "import fastrnn, numpy as np; print(fastrnn.get_num_threads());"
        f"fastrnn.set_num_threads({cap}); m = fastrnn.GRU(8, 16);"
        "y, _ = m(np.ones((4, 3, 8), np.float32)); m.backward(y); print('ok')"
    )
    env = {**os.environ, "OMP_NUM_THREADS": str(10 * cap)}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(cap), "ok"]
