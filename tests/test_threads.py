"""Threads: fastrnn's own thread count and its default (the environment, else the CPUs this
process may use: affinity mask, cgroup CPU quota), results bit-identical for every thread count,
and concurrent Python threads bit-identical to running one after another."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
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


THREAD_VARIABLES = ("FASTRNN_NUM_THREADS", "OMP_NUM_THREADS")


def default_threads(
    env: dict[str, str] | None = None, preexec_fn: Callable[[], None] | None = None
) -> tuple[int, int]:
    """(fastrnn.get_num_threads(), the CPUs it may use) in a fresh interpreter, whose environment
    has no FASTRNN_NUM_THREADS or OMP_NUM_THREADS but those of `env`; `preexec_fn` runs in the
    child before it starts Python."""
    clean = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    code = "import fastrnn; print(fastrnn.get_num_threads(), fastrnn.functional.available_cpus())"
    r = subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, **(env or {})},
        preexec_fn=preexec_fn,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    threads, cpus = map(int, r.stdout.split())
    return threads, cpus


def test_default_follows_omp_num_threads() -> None:
    assert default_threads({"OMP_NUM_THREADS": "3"})[0] == 3
    threads, cpus = default_threads()
    assert threads == cpus == fastrnn.functional.available_cpus()
    if hasattr(os, "sched_getaffinity"):
        assert 1 <= cpus <= len(os.sched_getaffinity(0))


@pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs sched_setaffinity and two CPUs",
)
def test_default_is_the_affinity_mask_not_the_machine() -> None:
    """A process allowed one CPU (taskset -c N) gets one thread, not the machine's cores; a
    variable's value is not cut to the CPUs."""
    one = {min(os.sched_getaffinity(0))}
    two = set(sorted(os.sched_getaffinity(0))[:2])
    assert default_threads(preexec_fn=lambda: os.sched_setaffinity(0, one)) == (1, 1)
    threads, cpus = default_threads(preexec_fn=lambda: os.sched_setaffinity(0, two))
    assert threads == cpus and 1 <= cpus <= 2  # a cgroup quota of 1 CPU may cut it further
    for env in ({"OMP_NUM_THREADS": "3"}, {"FASTRNN_NUM_THREADS": "3"}):
        assert default_threads(env, lambda: os.sched_setaffinity(0, one)) == (3, 1)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"OMP_NUM_THREADS": "3"}, 3),
        ({"OMP_NUM_THREADS": " 3 "}, 3),
        ({"OMP_NUM_THREADS": "3,2"}, 3),  # OpenMP's nesting levels: the first counts
        ({"OMP_NUM_THREADS": "+2"}, 2),  # as libgomp reads it
        ({"FASTRNN_NUM_THREADS": "3"}, 3),
        ({"FASTRNN_NUM_THREADS": "3", "OMP_NUM_THREADS": "2"}, 3),  # fastrnn's own wins
        ({"FASTRNN_NUM_THREADS": "2", "OMP_NUM_THREADS": "3"}, 2),
        ({"FASTRNN_NUM_THREADS": "junk", "OMP_NUM_THREADS": "3"}, 3),  # ignored: the next one
        ({"FASTRNN_NUM_THREADS": "0", "OMP_NUM_THREADS": "3"}, 3),
        ({"FASTRNN_NUM_THREADS": "", "OMP_NUM_THREADS": "3"}, 3),
        ({"FASTRNN_NUM_THREADS": str(10**6)}, F.MAX_THREADS),  # cut to the cap
        ({"FASTRNN_NUM_THREADS": "9" * 30}, F.MAX_THREADS),
    ],
    ids=str,
)
def test_default_from_the_environment(env: dict[str, str], expected: int) -> None:
    assert default_threads(env)[0] == expected


GARBAGE = ["", " ", "0", "-1", "+", "abc", "2.5", "0x4", "1e2", "3,x", "3,", ",3", "3 4", "\u0663"]


@pytest.mark.parametrize("value", GARBAGE)
@pytest.mark.parametrize("variable", THREAD_VARIABLES)
def test_default_ignores_garbage(variable: str, value: str) -> None:
    """A variable that is not a positive integer (OMP_NUM_THREADS: a list of them) is ignored:
    the default is the CPUs this process may use."""
    threads, cpus = default_threads({variable: value})
    assert threads == cpus


# The cgroup reader on fake trees: _cgroup_cpu_limit(root, /proc/self/cgroup, /proc/self/mountinfo)
# reads every file under `root`; 0 is no limit.
V2_MOUNT = "41 31 0:38 / /sys/fs/cgroup rw,nosuid,nodev shared:9 - cgroup2 cgroup2 rw,nsdelegate\n"
V1_MOUNTS = (
    "25 24 0:22 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755\n"
    "30 25 0:26 / /sys/fs/cgroup/cpuset rw,relatime shared:10 - cgroup cgroup rw,cpuset\n"
    "31 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:11 - cgroup cgroup rw,cpu,cpuacct\n"
)
V1_DIR = "sys/fs/cgroup/cpu,cpuacct"


def cgroup_limit(root: Path, files: Mapping[str, str | bytes], cgroup: str, mountinfo: str) -> int:
    """The limit the reader finds in a tree of `files` (path under root: contents)."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode() if isinstance(text, str) else text)
    return fastrnn._core._cgroup_cpu_limit(str(root), cgroup, mountinfo)


@pytest.mark.parametrize(
    ("parent", "child", "expected"),
    [
        (None, "150000 100000\n", 2),  # 1.5 CPUs, rounded up
        (None, "200000 100000", 2),  # no newline
        (None, "50000 100000\n", 1),  # half a CPU still needs a thread
        (None, "max 100000\n", 0),  # no limit
        ("100000 100000\n", "max 100000\n", 1),  # a parent's quota caps its children
        ("500000 100000\n", "300000 100000\n", 3),
        ("200000 100000\n", "300000 100000\n", 2),
        ("250000 100000\n", "300000 100000\n", 3),
        ("max 100000\n", "100000 50000\n", 2),
    ],
)
def test_cgroup_v2_quota(tmp_path: Path, parent: str | None, child: str, expected: int) -> None:
    files = {"sys/fs/cgroup/a/b/cpu.max": child}
    if parent is not None:
        files["sys/fs/cgroup/a/cpu.max"] = parent
    assert cgroup_limit(tmp_path, files, "0::/a/b\n", V2_MOUNT) == expected
    # without a mount table, cgroup v2 is looked for at /sys/fs/cgroup
    assert fastrnn._core._cgroup_cpu_limit(str(tmp_path), "0::/a/b\n", "") == expected


@pytest.mark.parametrize(
    "text",
    ["", "\n", "garbage", "150000", "150000 0", "0 100000", "-5 100000", "1.5 100000",
     "150000 100000 7", "max", "150000 abc", "0x10 100000", b"\xff\x00 \x01"],
    ids=repr,
)  # fmt: skip
def test_cgroup_v2_malformed_is_no_limit(tmp_path: Path, text: str | bytes) -> None:
    files = {"sys/fs/cgroup/a/cpu.max": text, "sys/fs/cgroup/a/b/cpu.max": text}
    assert cgroup_limit(tmp_path, files, "0::/a/b\n", V2_MOUNT) == 0


def test_cgroup_v2_where_the_files_are(tmp_path: Path) -> None:
    # no files at all; a cpu.max that is a directory; one too large to be a cpu.max
    assert cgroup_limit(tmp_path, {}, "0::/a/b\n", V2_MOUNT) == 0
    (tmp_path / "sys/fs/cgroup/a/b/cpu.max").mkdir(parents=True)
    assert cgroup_limit(tmp_path, {}, "0::/a/b\n", V2_MOUNT) == 0
    big = {"sys/fs/cgroup/c/cpu.max": "200000 100000" + " " * 10000}
    assert cgroup_limit(tmp_path, big, "0::/c\n", V2_MOUNT) == 0
    # nothing is read above the mount point
    above = {"sys/fs/cpu.max": "100000 100000\n", "sys/fs/cgroup/d/cpu.max": "300000 100000\n"}
    assert cgroup_limit(tmp_path, above, "0::/d\n", V2_MOUNT) == 3
    # a cgroup namespace: /proc/self/cgroup says "/" and the files are at the mount point
    ns = tmp_path / "ns"
    assert cgroup_limit(ns, {"sys/fs/cgroup/cpu.max": "400000 100000\n"}, "0::/\n", V2_MOUNT) == 4
    # the container's own cgroup bind-mounted (mountinfo's root is the cgroup): the mount point,
    # and below it the rest of the path; a path outside the mounted part: the mount point
    bind = "41 31 0:38 /kubepods/pod1/c1 /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n"
    files = {"sys/fs/cgroup/cpu.max": "300000 100000\n", "sys/fs/cgroup/s/cpu.max": "1 100000\n"}
    root = tmp_path / "bind"
    assert cgroup_limit(root, files, "0::/kubepods/pod1/c1\n", bind) == 3
    assert cgroup_limit(root, files, "0::/kubepods/pod1/c1/s\n", bind) == 1
    assert cgroup_limit(root, files, "0::/kubepods/pod1/c10\n", bind) == 3
    # a mount point with a space, escaped in mountinfo (a backslash and 040)
    spaced = "41 31 0:38 / /my\\040cgroups rw - cgroup2 cgroup2 rw\n"
    files = {"my cgroups/a/cpu.max": "200000 100000\n"}
    assert cgroup_limit(tmp_path / "esc", files, "0::/a\n", spaced) == 2


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"c/cpu.cfs_quota_us": "150000\n", "c/cpu.cfs_period_us": "100000\n"}, 2),
        ({"c/cpu.cfs_quota_us": "-1\n", "c/cpu.cfs_period_us": "100000\n"}, 0),  # no limit
        ({"c/cpu.cfs_quota_us": "-1\n", "c/cpu.cfs_period_us": "100000\n",
          "cpu.cfs_quota_us": "100000\n", "cpu.cfs_period_us": "100000\n"}, 1),  # the parent's
        ({"c/cpu.cfs_quota_us": "300000\n", "c/cpu.cfs_period_us": "100000\n",
          "cpu.cfs_quota_us": "500000\n", "cpu.cfs_period_us": "100000\n"}, 3),
        ({"c/cpu.cfs_quota_us": "150000\n"}, 0),  # no period
        ({"c/cpu.cfs_quota_us": "150000\n", "c/cpu.cfs_period_us": "0\n"}, 0),
        ({"c/cpu.cfs_quota_us": "1.5\n", "c/cpu.cfs_period_us": "100000\n"}, 0),
        ({"c/cpu.cfs_quota_us": "", "c/cpu.cfs_period_us": "100000\n"}, 0),
        ({"c/cpu.cfs_quota_us": "150000\n", "c/cpu.cfs_period_us": "junk\n"}, 0),
    ],
)  # fmt: skip
def test_cgroup_v1_quota(tmp_path: Path, files: dict[str, str], expected: int) -> None:
    """The cpu controller's hierarchy (here mounted with cpuacct) holding /docker/c (the test
    names its files relative to /docker); mountinfo says where it is mounted."""
    tree = {f"{V1_DIR}/docker/{k}": v for k, v in files.items()}
    cgroup = "12:cpuset:/\n4:cpu,cpuacct:/docker/c\n1:name=systemd:/docker/c\n"
    assert cgroup_limit(tmp_path, tree, cgroup, V1_MOUNTS) == expected


def test_cgroup_v1_where_the_files_are(tmp_path: Path) -> None:
    files = {
        f"{V1_DIR}/docker/c/cpu.cfs_quota_us": "150000\n",
        f"{V1_DIR}/docker/c/cpu.cfs_period_us": "100000\n",
    }
    assert cgroup_limit(tmp_path, files, "4:cpu,cpuacct:/docker/c\n", V1_MOUNTS) == 2
    # not the cpu controller's hierarchy; no mount table (v1 needs it)
    assert cgroup_limit(tmp_path, files, "3:cpuacct:/docker/c\n", V1_MOUNTS) == 0
    assert cgroup_limit(tmp_path, files, "4:cpu,cpuacct:/docker/c\n", "") == 0
    # a cgroup namespace ("/", the files at the mount point) or the container's cgroup mounted
    # (mountinfo's root is the path): the mount point, "cpu" alone
    files = {
        "sys/fs/cgroup/cpu/cpu.cfs_quota_us": "250000\n",
        "sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n",
    }
    mount = "32 31 0:29 {} /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
    root = tmp_path / "ns"
    assert cgroup_limit(root, files, "1:cpu:/\n", mount.format("/")) == 3
    assert cgroup_limit(root, files, "1:cpu:/docker/c\n", mount.format("/docker/c")) == 3


def test_cgroup_v1_and_v2_together(tmp_path: Path) -> None:
    """A hybrid system (v1 controllers and the v2 hierarchy): the smaller limit."""
    files = {
        "sys/fs/cgroup/cpu/a/cpu.cfs_quota_us": "400000\n",
        "sys/fs/cgroup/cpu/a/cpu.cfs_period_us": "100000\n",
        "sys/fs/cgroup/unified/a/cpu.max": "200000 100000\n",
    }
    mountinfo = (
        "32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n"
        "41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
    )
    assert cgroup_limit(tmp_path, files, "1:cpu:/a\n0::/a\n", mountinfo) == 2


@pytest.mark.parametrize(
    "cgroup",
    ["", "\n", "garbage", "0::", "0::relative/path", "::\n:\n", "0:/a\n", "x" * 100000],
    ids=lambda c: repr(c[:20]),
)
def test_cgroup_malformed_proc_files_are_no_limit(tmp_path: Path, cgroup: str) -> None:
    files = {"sys/fs/cgroup/cpu.max": "100000 100000\n"}
    for mountinfo in ("", "garbage\n", "1 2 3 4 5 - \n", V2_MOUNT + "\x00" * 10):
        limit = cgroup_limit(tmp_path, files, cgroup, mountinfo)
        assert limit == 0


def test_cgroup_huge_quota_is_positive(tmp_path: Path) -> None:
    files = {"sys/fs/cgroup/cpu.max": "9" * 40 + " 1\n"}
    assert cgroup_limit(tmp_path, files, "0::/\n", V2_MOUNT) >= F.MAX_THREADS


@pytest.mark.skipif(not os.path.exists("/proc/self/cgroup"), reason="Linux cgroups only")
def test_available_cpus_is_affinity_and_cgroup_quota() -> None:
    """This machine: the CPUs this process may use are the fewest of its affinity mask and its
    cgroups' quota (what the reader makes of the real files)."""
    cgroup = Path("/proc/self/cgroup").read_text()
    mountinfo = Path("/proc/self/mountinfo").read_text()
    limit = fastrnn._core._cgroup_cpu_limit("", cgroup, mountinfo)
    assert limit >= 0
    affinity = len(os.sched_getaffinity(0))
    assert fastrnn.functional.available_cpus() == min(affinity, limit or affinity)


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
    env = {k: v for k, v in os.environ.items() if k != "FASTRNN_NUM_THREADS"}
    env["OMP_NUM_THREADS"] = str(10 * cap)
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(cap), "ok"]
