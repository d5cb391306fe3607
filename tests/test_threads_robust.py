"""fastrnn's threads on a machine it does not have to itself: forked children (os.fork,
multiprocessing pools, PyTorch DataLoader workers) after the parent ran parallel calls, a busy
process competing for the cores, and never more threads than a call has work items. Each case
runs in a subprocess with a timeout: a hang is a failure, not a stuck test run."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

# The parent: 2 threads, one parallel call (its pool's workers now exist), then the case.
PARENT = """
import os, sys, numpy as np, fastrnn
fastrnn.set_num_threads(2)
m = fastrnn.GRU(64, 256).eval()
x = np.random.default_rng(0).standard_normal((30, 64, 64)).astype(np.float32)
y0, _ = m(x)

def child_call(_=None):
    y, _ = m(x)
    t = fastrnn.LSTM(64, 128)
    yt, _ = t(x)
    dx, _ = t.backward(np.ones_like(yt))
    return bool(np.array_equal(y, y0)) and bool(np.isfinite(dx).all())
"""

CASES = {
    "os.fork": """
pid = os.fork()
if pid == 0:
    os._exit(0 if child_call() else 3)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0, status
""",
    "multiprocessing fork pool": """
import multiprocessing as mp
with mp.get_context("fork").Pool(2) as pool:
    assert pool.map(child_call, range(4)) == [True] * 4
""",
    "fork child sets its own thread count": """
pid = os.fork()
if pid == 0:
    fastrnn.set_num_threads(3)
    ok = child_call() and fastrnn.get_num_threads() == 3
    os._exit(0 if ok else 3)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0, status
""",
    "fork while another thread runs parallel calls": """
import threading, time
stop = []
def busy():
    while not stop:
        m(x)
th = threading.Thread(target=busy)
th.start()
time.sleep(0.05)
pids = []
for _ in range(3):  # the fork lands at any moment of the other thread's calls
    pid = os.fork()
    if pid == 0:
        os._exit(0 if child_call() else 3)
    pids.append(pid)
    time.sleep(0.01)
stop.append(1)
th.join()
for pid in pids:
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, status
""",
    "parent still parallel after fork": """
pid = os.fork()
if pid == 0:
    os._exit(0)
os.waitpid(pid, 0)
assert child_call()
""",
}


def run_case(code: str, timeout: float = 120) -> None:
    try:
        r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                           text=True, timeout=timeout)  # fmt: skip
    except subprocess.TimeoutExpired as e:  # the hang this guards against
        raise AssertionError(f"no result within {timeout} s: a forked child hung") from e
    assert r.returncode == 0, r.stderr[-3000:]
    assert "ok" in r.stdout.split(), r.stdout


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
@pytest.mark.parametrize("case", list(CASES))
def test_forked_child_runs_parallel_calls(case: str) -> None:
    run_case(PARENT + CASES[case] + "print('ok')\n")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_torch_dataloader_workers() -> None:
    pytest.importorskip("torch")
    code = PARENT + textwrap.dedent("""
        import torch
        from torch.utils.data import DataLoader, Dataset

        class Calls(Dataset):
            def __len__(self): return 4
            def __getitem__(self, i): return torch.tensor(child_call())

        loader = DataLoader(Calls(), batch_size=1, num_workers=2,
                            multiprocessing_context="fork")
        assert all(bool(b.item()) for b in loader)
        print("ok")
    """)
    run_case(code)


def os_threads() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Threads:"))


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux's /proc")
def test_no_more_threads_than_work_items() -> None:
    """1024 threads asked for: a call starts at most as many as its largest job has items
    (here the time loop's parts: H / 16 = 16 unit blocks), and small calls start none."""
    code = textwrap.dedent("""
        import numpy as np, fastrnn
        def os_threads():
            with open("/proc/self/status") as f:
                return next(int(l.split()[1]) for l in f if l.startswith("Threads:"))
        fastrnn.set_num_threads(fastrnn.functional.MAX_THREADS)
        before = os_threads()
        small = fastrnn.GRU(8, 16)
        y, _ = small(np.ones((4, 3, 8), np.float32)); small.backward(y)
        after_small = os_threads()
        m = fastrnn.LSTM(64, 256).eval()
        m(np.ones((8, 64, 64), np.float32))
        print(before, after_small, os_threads())
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    before, after_small, after = map(int, r.stdout.split())
    assert after_small == before
    assert before < after <= before + 64


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs sched_setaffinity")
def test_bit_identical_with_a_busy_competitor() -> None:
    """A busy process on one core makes the pool's threads lose it at random moments, so parts
    of steps move between threads: every result stays bit-identical to one thread's."""
    code = textwrap.dedent("""
        import subprocess, sys, os, numpy as np, fastrnn
        from fastrnn import functional as F
        cpu = max(os.sched_getaffinity(0))
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"],
                                preexec_fn=lambda: os.sched_setaffinity(0, {cpu}))
        try:
            rng = np.random.default_rng(1)
            out = {}
            for cell, cls in [("lstm", fastrnn.LSTM), ("gru", fastrnn.GRU)]:
                m = cls(48, 192, num_layers=2, bidirectional=True)
                x = rng.standard_normal((40, 24, 48)).astype(np.float32)
                runs = set()
                for n in (1, 2, 3, 2, 1, 2):
                    fastrnn.set_num_threads(n)
                    y, _ = m(x)
                    dx, _ = m.backward(y)
                    grads = b"".join(g.tobytes() for g in m.grads.values())
                    runs.add(y.tobytes() + dx.tobytes() + grads)
                out[cell] = len(runs)
            print(out["lstm"], out["gru"])
        finally:
            busy.kill()
            busy.wait()
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1", "1"]
