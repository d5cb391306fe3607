"""The built module's machine code against the ISA levels of its variants (tools/check_isa.py).

No function may need instructions above the lowest level it can be called at: the kernels of
variant x86-64-vN only what vN has, the code outside the variant namespaces (bindings, CPU
detection, the standard library's inline functions, of which the linker keeps one body) only what
its callers have, static initialisers only the baseline. Linux x86-64 with GNU objdump only.
"""

from __future__ import annotations

import importlib.util
import json
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import fastrnn._core as core

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "check_isa.py"

pytestmark = [
    pytest.mark.skipif(
        not (sys.platform.startswith("linux") and platform.machine() in ("x86_64", "AMD64")),
        reason="the check reads x86-64 ELF code",
    ),
    pytest.mark.skipif(shutil.which("objdump") is None, reason="needs GNU objdump (binutils)"),
]


def load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_isa", TOOL)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["check_isa"] = mod
    spec.loader.exec_module(mod)
    return mod


def run_tool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(TOOL), *args], capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("check_isa") / "result.json"
    r = run_tool(core.__file__, "--json", str(out))
    if r.returncode == 2:  # e.g. a stripped module installed from a wheel: no names to check
        pytest.skip(f"check_isa cannot check this module: {r.stderr.strip()}")
    assert r.returncode == 0, f"check_isa found violations:\n{r.stdout}\n{r.stderr}"
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def test_no_function_needs_more_than_where_it_is_called(result: dict[str, Any]) -> None:
    assert result["violations"] == []
    assert result["load_time_violations"] == []


def test_variants_use_their_instruction_sets(result: dict[str, Any]) -> None:
    """The per-variant flags took effect: v2 has no VEX, v3 VEX but no EVEX, v4 zmm registers,
    v4-bf16 vdpbf16ps (the bfloat16 products), v4-amx the AMX tiles (and only it)."""
    summary = result["summary"]
    compiled = core.build_info()["isa_compiled"]
    for name in compiled:
        ns = name.replace("-", "_")
        assert ns in summary, f"no function of variant {name} in the module"
        insns = summary[ns]["instructions_with"]
        if name == "x86-64-v2":
            assert insns.get("vex", 0) == 0 and insns.get("evex", 0) == 0
            assert summary[ns]["functions_needing"]["x86-64-v2"] > 0
        elif name == "x86-64-v3":
            assert insns.get("vex", 0) > 0 and insns.get("ymm", 0) > 0
            assert insns.get("evex", 0) == 0 and insns.get("zmm", 0) == 0
        elif name.startswith("x86-64-v4"):
            assert insns.get("evex", 0) > 0 and insns.get("zmm", 0) > 0
        if name == "x86-64-v4-bf16":
            assert insns.get("bf16/vnni", 0) > 0
        if name == "x86-64-v4-amx":
            assert insns.get("amx", 0) > 0
            assert summary[ns]["functions_needing"]["x86-64-v4-amx"] > 0
        else:
            assert insns.get("amx", 0) == 0


def test_classification() -> None:
    tool = load_tool()
    cases = [  # mnemonic, operands, encoding, level
        ("movaps", "%xmm1,%xmm0", "legacy", tool.BASE),
        ("pxor", "%xmm0,%xmm0", "legacy", tool.BASE),
        ("movddup", "%xmm1,%xmm0", "legacy", tool.V2),  # SSE3
        ("pshufb", "%xmm1,%xmm0", "legacy", tool.V2),  # SSSE3
        ("pmulld", "%xmm1,%xmm0", "legacy", tool.V2),  # SSE4.1
        ("popcnt", "%rax,%rax", "legacy", tool.V2),
        ("pextrw", "$0x1,%xmm0,%eax", "legacy", tool.BASE),  # SSE2 form
        ("pextrw", "$0x1,%xmm0,(%rax)", "legacy", tool.V2),  # SSE4.1 form
        ("vmovss", "(%rax),%xmm0", "vex", tool.V3),  # any VEX instruction needs AVX
        ("vpcmpeqd", "%xmm0,%xmm0,%xmm0", "vex", tool.V3),
        ("vfmadd231ps", "%ymm1,%ymm2,%ymm3", "vex", tool.V3),
        ("shlx", "%rax,%rbx,%rcx", "vex", tool.V3),  # BMI2
        ("lzcnt", "%rax,%rax", "legacy", tool.V3),
        ("movbe", "(%rax),%eax", "legacy", tool.V3),
        ("vaddps", "%zmm1,%zmm2,%zmm3", "evex", tool.V4),
        ("vmovups", "%xmm16,(%rax)", "evex", tool.V4),
        ("vpternlogd", "$0xff,%xmm0,%xmm0,%xmm0", "evex", tool.V4),
        ("kmovw", "%k1,%eax", "vex", tool.V4),  # opmask instructions are VEX-encoded
        ("vaddps", "%ymm1,%ymm2,%ymm3{%k1}{z}", "evex", tool.V4),
        ("vdpbf16ps", "%zmm1,%zmm2,%zmm3", "evex", tool.BF16),
        ("vpdpbusd", "%zmm1,%zmm2,%zmm3", "evex", tool.BF16),
        ("vpdpbusd", "%ymm1,%ymm2,%ymm3", "vex", tool.OTHER),  # AVX-VNNI: in no level
        ("ldtilecfg", "0x180(%rsp)", "vex", tool.AMX),  # AMX-TILE
        ("tileloadd", "(%rcx,%rdx,1),%tmm4", "vex", tool.AMX),
        ("tileloaddt1", "(%rcx,%rdx,1),%tmm4", "vex", tool.AMX),
        ("tilestored", "%tmm0,(%rax,%rdx,1)", "vex", tool.AMX),
        ("tilezero", "%tmm0", "vex", tool.AMX),
        ("tilerelease", "", "vex", tool.AMX),
        ("tdpbf16ps", "%tmm6,%tmm4,%tmm0", "vex", tool.AMX),  # AMX-BF16
        ("tdpbusd", "%tmm6,%tmm4,%tmm0", "vex", tool.AMX),  # AMX-INT8
        ("tdpfp16ps", "%tmm6,%tmm4,%tmm0", "vex", tool.OTHER),  # AMX-FP16: in no level
        ("tcmmimfp16ps", "%tmm6,%tmm4,%tmm0", "vex", tool.OTHER),  # AMX-COMPLEX
        ("aesenc", "%xmm1,%xmm0", "legacy", tool.OTHER),
        ("verw", "%ax", "legacy", tool.BASE),  # not a SIMD 'v' instruction
        ("xgetbv", "", "legacy", tool.BASE),  # allowed: the CPU detection checks OSXSAVE
    ]
    for mnem, ops, enc, level in cases:
        got, _ = tool.classify(mnem, ops, enc)
        assert got == level, f"{mnem} {ops} ({enc}): {tool.LEVELS[got]}, not {tool.LEVELS[level]}"
    assert tool.encoding("c5 fa 10 00") == "vex"
    assert tool.encoding("62 f1 7c 48 10 14 b9") == "evex"
    assert tool.encoding("66 0f ef c0") == "legacy"
    assert tool.encoding("f3 0f bd c0") == "legacy"


# A variant unit listed first in the link, so its AVX2 body of an inline function shared with the
# baseline unit is the one kept; and a static initialiser in the variant unit.
VARIANT_SRC = """
#include <cmath>
#include <vector>
template <class T> __attribute__((noinline)) void scale_all(std::vector<T>& v, T a) {
  for (auto& x : v) x = x * a + std::sqrt(x);
}
namespace fastrnn { namespace detail { namespace isa_x86_64_v3 {
float kernel(std::vector<float>& v) { scale_all(v, 2.0f); return v[0]; }
static std::vector<double> table = [] {
  std::vector<double> t(64);
  for (int i = 0; i < 64; ++i) t[i] = std::sqrt(double(i)) * 1.5;
  return t;
}();
double table_sum() { double s = 0; for (double x : table) s += x; return s; }
}}}
"""
BASE_SRC = """
#include <cmath>
#include <vector>
template <class T> __attribute__((noinline)) void scale_all(std::vector<T>& v, T a) {
  for (auto& x : v) x = x * a + std::sqrt(x);
}
extern "C" __attribute__((visibility("default"))) float entry(int n) {
  std::vector<float> v(n, 1.0f);
  scale_all(v, 3.0f);
  return v[0];
}
"""


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ to build the bad example")
def test_checker_finds_a_shared_body_compiled_for_a_higher_level(tmp_path: Path) -> None:
    (tmp_path / "v3.cpp").write_text(VARIANT_SRC)
    (tmp_path / "base.cpp").write_text(BASE_SRC)
    cxx = ["g++", "-O3", "-fPIC", "-fvisibility=hidden", "-c"]
    subprocess.run([*cxx, "-mavx2", "-mfma", "v3.cpp", "-o", "v3.o"], cwd=tmp_path, check=True)
    subprocess.run([*cxx, "base.cpp", "-o", "base.o"], cwd=tmp_path, check=True)
    for name, objs in (("bad.so", ["v3.o", "base.o"]), ("good.so", ["base.o", "v3.o"])):
        subprocess.run(["g++", "-shared", "-o", name, *objs], cwd=tmp_path, check=True)

    r = run_tool(str(tmp_path / "bad.so"), "--json", "-")
    assert r.returncode == 1, r.stdout + r.stderr
    res = json.loads(r.stdout)
    bad = {v["function"].split("(")[0]: v for v in res["violations"]}
    assert "void scale_all<float>" in bad, res["violations"]
    assert bad["void scale_all<float>"]["needs"] == "x86-64-v3"
    assert bad["void scale_all<float>"]["reached_at"] == "baseline"
    assert [v["function"] for v in res["load_time_violations"]] == ["_GLOBAL__sub_I_v3.cpp"]

    # the baseline unit first: its body is kept and only the static initialiser remains
    r = run_tool(str(tmp_path / "good.so"), "--json", "-")
    assert r.returncode == 1, r.stdout + r.stderr
    res = json.loads(r.stdout)
    assert res["violations"] == []
    assert [v["function"] for v in res["load_time_violations"]] == ["_GLOBAL__sub_I_v3.cpp"]


# The same AMX tile product in the x86-64-v4-amx variant's namespace (allowed) and in
# x86-64-v4-bf16's (a violation: AVX512_BF16 CPUs without AMX, Zen 4 and 5, Cooper Lake).
AMX_SRC = """
#include <immintrin.h>
#define TILES                                                                     \\
  __attribute__((noinline)) void tiles(const void* cfg, const void* a, void* c) { \\
    _tile_loadconfig(cfg);                                                        \\
    _tile_zero(0);                                                                \\
    _tile_loadd(1, a, 64);                                                        \\
    _tile_loadd(2, a, 64);                                                        \\
    _tile_dpbf16ps(0, 1, 2);                                                      \\
    _tile_dpbusd(3, 1, 2);                                                        \\
    _tile_stored(0, c, 64);                                                       \\
    _tile_release();                                                              \\
  }
namespace fastrnn { namespace detail {
namespace isa_x86_64_v4_amx { TILES }
namespace isa_x86_64_v4_bf16 {
TILES
__m512 dot(__m512 acc, __m512bh a, __m512bh b) { return _mm512_dpbf16_ps(acc, a, b); }
}
}}
"""


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ to build the bad example")
def test_checker_places_amx_above_v4_bf16(tmp_path: Path) -> None:
    (tmp_path / "amx.cpp").write_text(AMX_SRC)
    flags = ["-mavx512f", "-mavx512bf16", "-mamx-tile", "-mamx-bf16", "-mamx-int8"]
    cxx = ["g++", "-O2", "-fPIC", "-fvisibility=hidden", "-shared", *flags]
    r = subprocess.run([*cxx, "amx.cpp", "-o", "amx.so"], cwd=tmp_path, capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"g++ cannot compile AMX intrinsics: {r.stderr.decode()[-300:]}")

    r2 = run_tool(str(tmp_path / "amx.so"), "--json", "-")
    assert r2.returncode == 1, r2.stdout + r2.stderr
    res = json.loads(r2.stdout)
    assert [
        (v["function"].split("(")[0], v["needs"], v["reached_at"]) for v in res["violations"]
    ] == [("fastrnn::detail::isa_x86_64_v4_bf16::tiles", "x86-64-v4-amx", "x86-64-v4-bf16")]
    assert res["load_time_violations"] == [] and res["warnings"] == []
    amx = res["summary"]["x86_64_v4_amx"]
    assert amx["functions_needing"]["x86-64-v4-amx"] == 1
    assert amx["instructions_with"]["amx"] >= 8  # ldtilecfg, tilezero, 2 x tileloadd, ...
    assert res["summary"]["x86_64_v4_bf16"]["functions_needing"]["x86-64-v4-bf16"] == 1  # dot
