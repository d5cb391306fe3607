"""Kernel variants (instruction sets): the choice at import, FASTRNN_ISA, and the parity suite
under every variant this CPU can run, each in a process of its own (the choice is made once, at
import)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import fastrnn

INFO = fastrnn.build_info()
TESTS = Path(__file__).parent

# The suites that compare the kernels with an oracle (the NumPy reference, finite differences,
# PyTorch, ONNX Runtime), the thread-determinism checks and the argument checks: run again under
# every other variant. (The rest -- CLI, examples, bench, GIL -- does not depend on the variant.)
PARITY = [
    "test_attention.py",
    "test_seq2seq.py",
    "test_bf16.py",
    "test_int8.py",
    "test_functional.py",
    "test_functional_stack.py",
    "test_cell_options.py",
    "test_zoneout.py",
    "test_layer_norm_cells.py",
    "test_gradcheck.py",
    "test_extremes.py",
    "test_properties.py",
    "test_layers.py",
    "test_determinism.py",
    "test_threads.py",
    "test_training.py",
    "test_reference_training.py",
    "test_layers_vs_torch.py",
    "test_fastrnn_torch.py",
    "test_onnx.py",
    "test_convert.py",
    "test_errors.py",
    "test_crash_catalogue.py",
]


def _run(code: str, isa: str | None, **kw: Any) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "FASTRNN_ISA"}
    if isa is not None:
        env["FASTRNN_ISA"] = isa
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600, **kw
    )


def test_build_info_names_the_variants() -> None:
    compiled, available = INFO["isa_compiled"], INFO["isa_available"]
    assert compiled and available
    assert INFO["isa"] in available
    # available: the compiled ones this CPU runs, in the same order (best last)
    assert available == [v for v in compiled if v in available]
    if "FASTRNN_ISA" not in os.environ:
        assert INFO["isa"] == available[-1]


def test_default_is_the_best_available() -> None:
    out = _run("import fastrnn; print(fastrnn.build_info()['isa'])", None, check=True)
    assert out.stdout.split() == [INFO["isa_available"][-1]]


@pytest.mark.parametrize("isa", INFO["isa_available"])
def test_fastrnn_isa_selects_a_variant(isa: str) -> None:
    out = _run("import fastrnn; i = fastrnn.build_info(); print(i['isa'], i['simd'])", isa,
               check=True)  # fmt: skip
    assert out.stdout.split()[0] == isa
    # the name matches case-insensitively
    out = _run("import fastrnn; print(fastrnn.build_info()['isa'])", isa.upper(), check=True)
    assert out.stdout.split() == [isa]


def test_fastrnn_isa_ignores_surrounding_white_space() -> None:
    isa = INFO["isa_available"][0]
    out = _run("import fastrnn; print(fastrnn.build_info()['isa'])", f" {isa}\n", check=True)
    assert out.stdout.split() == [isa]


def test_empty_fastrnn_isa_means_the_best() -> None:
    out = _run("import fastrnn; print(fastrnn.build_info()['isa'])", "", check=True)
    assert out.stdout.split() == [INFO["isa_available"][-1]]


@pytest.mark.parametrize("name", ["avx9000", "x86-64-v5", "native-ish", "neon2"])
def test_unknown_fastrnn_isa_is_an_import_error_listing_the_choices(name: str) -> None:
    out = _run("import fastrnn", name)
    assert out.returncode == 1, out.stderr
    assert "ImportError" in out.stderr
    assert f"FASTRNN_ISA={name}: unknown kernel variant" in out.stderr
    for v in INFO["isa_compiled"]:
        assert v in out.stderr


def test_unknown_fastrnn_isa_fails_the_extension_import_too() -> None:
    out = _run("import fastrnn._core", "bogus")
    assert out.returncode == 1 and "ImportError" in out.stderr and "bogus" in out.stderr


@pytest.mark.parametrize(
    "isa", [v for v in INFO["isa_compiled"] if v not in INFO["isa_available"]] or [None]
)
def test_a_variant_this_cpu_cannot_run_is_an_import_error(isa: str | None) -> None:
    if isa is None:
        pytest.skip(
            "this CPU runs every compiled variant (tools/emulated_cpus.sh tests older CPUs)"
        )
    out = _run("import fastrnn", isa)
    assert out.returncode == 1 and "ImportError" in out.stderr
    assert "this CPU cannot run that variant" in out.stderr and "lacks" in out.stderr


@pytest.mark.parametrize("isa", INFO["isa_available"])
def test_every_variant_agrees_with_the_reference(isa: str) -> None:
    """A quick check of every cell, float64 and float32, in each variant (the selfcheck's)."""
    code = "import sys, fastrnn.tools.selfcheck as s; sys.exit(s.main(['--no-timing']))"
    out = _run(code, isa)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"kernel variant: {isa}" in out.stdout


@pytest.mark.variants
@pytest.mark.parametrize("isa", [v for v in INFO["isa_available"] if v != INFO["isa"]] or [None])
def test_parity_suite_under_variant(isa: str | None) -> None:
    """The parity suite (kernels vs the reference, finite differences, PyTorch, ONNX Runtime,
    thread determinism) under another variant; the variant in use runs it in this process."""
    if isa is None:
        pytest.skip("only one kernel variant runs on this CPU: the main run covers it")
    env = {**os.environ, "FASTRNN_ISA": isa}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
         *[str(TESTS / f) for f in PARITY]],
        env=env, capture_output=True, text=True, timeout=1800, cwd=TESTS.parent,
    )  # fmt: skip
    tail = "\n".join(proc.stdout.splitlines()[-30:])
    assert proc.returncode == 0, f"FASTRNN_ISA={isa}:\n{tail}\n{proc.stderr[-2000:]}"
    assert " passed" in tail
