"""Long runs: one call over a million steps with memory bounded by its output; Ctrl-C stops a
long call quickly and leaves the layer usable; repeated calls keep memory flat."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest


def run(code: str, timeout: float = 600) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_million_steps_in_one_call_memory_bounded_by_the_output() -> None:
    out = run("""
        import resource, numpy as np, fastrnn
        T, B, I, H = 1_000_000, 1, 4, 64
        m = fastrnn.LSTM(I, H, seed=0).eval()
        x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
        m(x[:10])  # warm up
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        y, (h, c) = m(x)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        assert np.isfinite(y).all() and y.shape == (T, B, H)
        print(peak - before, y.nbytes)
    """)
    grown, output = map(int, out.split())
    print(f"\npeak memory growth {grown / 2**20:.1f} MiB for an output of {output / 2**20:.1f} MiB")
    assert grown <= output + 16 * 2**20


@pytest.mark.resources
def test_ctrl_c_interrupts_a_long_call_quickly() -> None:
    out = run("""
        import os, signal, threading, time, numpy as np, fastrnn
        # Ctrl-C's handler whatever this process inherited: a shell's background job ('&')
        # starts with SIGINT ignored, and Python then installs no KeyboardInterrupt handler
        signal.signal(signal.SIGINT, signal.default_int_handler)
        m = fastrnn.GRU(32, 128, num_layers=2, seed=0)
        x = np.random.default_rng(0).standard_normal((200_000, 4, 32)).astype(np.float32)
        sent = []
        def interrupt():
            time.sleep(0.5)
            sent.append(time.perf_counter())
            os.kill(os.getpid(), signal.SIGINT)
        threading.Thread(target=interrupt).start()
        try:
            m(x)
            print("NOT INTERRUPTED")
        except KeyboardInterrupt:
            print("latency", time.perf_counter() - sent[0])
        y, _ = m(x[:50])  # the layer is still usable
        dx, _ = m.backward(np.ones_like(y))
        print("usable", np.isfinite(dx).all())
    """)
    assert "NOT INTERRUPTED" not in out, out
    latency = float(out.split("latency")[1].split()[0])
    print(f"\nCtrl-C latency: {latency * 1e3:.1f} ms")
    assert latency < 0.3
    assert "usable True" in out


@pytest.mark.resources
def test_repeated_calls_keep_memory_flat() -> None:
    out = run("""
        import resource, numpy as np, fastrnn
        m = fastrnn.LSTM(8, 16, num_layers=2, bidirectional=True, seed=0)
        x = np.random.default_rng(0).standard_normal((10, 4, 8)).astype(np.float32)
        lengths = np.array([10, 3, 7, 1])
        def rss():
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * 4096
        for _ in range(500):
            y, _ = m(x, lengths=lengths); m.backward(y)
        start = rss()
        for _ in range(10_000):
            y, _ = m(x, lengths=lengths); m.backward(y)
        print(rss() - start)
    """)
    grown = int(out)
    print(f"\nresident memory growth over 10000 forward+backward calls: {grown / 2**20:.2f} MiB")
    assert grown < 8 * 2**20
