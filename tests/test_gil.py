"""The GIL is released while the kernels compute, so other Python threads keep running."""

from __future__ import annotations

import threading
import time

import numpy as np

from fastrnn import functional as F


def test_other_threads_run_during_a_long_call() -> None:
    rng = np.random.default_rng(0)
    T, B, I, H = 200, 64, 256, 256
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    w = (0.05 * rng.standard_normal((4 * H, I))).astype(np.float32)
    u = (0.05 * rng.standard_normal((4 * H, H))).astype(np.float32)

    t0 = time.perf_counter()
    F.forward("lstm", x, w, u, training=False)
    duration = time.perf_counter() - t0

    done = threading.Event()

    def work() -> None:
        for _ in range(3):
            F.forward("lstm", x, w, u, training=False)
        done.set()

    worker = threading.Thread(target=work)
    stamps = []
    worker.start()
    while not done.is_set():
        stamps.append(time.perf_counter())
        time.sleep(0.001)
    worker.join()
    gaps = np.diff(stamps)
    # With the GIL held, this thread would stall for a whole call (about `duration` seconds).
    assert len(stamps) > 10
    assert gaps.max() < max(0.5 * duration, 0.05), (gaps.max(), duration)
