#!/usr/bin/env python3
"""Check that no code in fastrnn's module needs a higher x86-64 level than the CPUs that run it.

The module holds the kernels once per x86-64 level (x86-64-v2, -v3, -v4, -v4-bf16, -v4-amx),
each in a namespace of its own (fastrnn::detail::isa_x86_64_v3::, Eigen renamed
fastrnn_eigen_x86_64_v3::), and the rest compiled once for the baseline (x86-64, SSE2). Inline
functions and template instantiations outside those namespaces (std::vector<long> members,
std::sort helpers, ...) are compiled in several units with different flags, and the linker keeps
one body. This tool disassembles the linked module and checks, function by function, that the
instructions a body needs are available wherever it can be called from:

* every instruction is classified by the level it needs: baseline, v2 (SSE3..SSE4.2, POPCNT,
  CX16, LAHF), v3 (anything VEX-encoded, BMI1/2, LZCNT, MOVBE), v4 (EVEX, zmm, opmask registers,
  xmm/ymm16-31), v4-bf16 (AVX512_BF16/VNNI), v4-amx (AMX-TILE/BF16/INT8: the tile configuration,
  loads and stores, tdpbf16ps, tdpb[su][su]d, any %tmm operand), or "other" (in no level: AES,
  SHA, ADX, the later AMX extensions (FP16, COMPLEX, ...), ...).
  The level comes from the mnemonic and operands and from the encoding bytes (a 0xC4/0xC5 VEX or
  0x62 EVEX prefix), whichever is higher;
* each function has an owner: the variant whose namespace its (demangled) name contains, or
  "shared"; clones (.cold, .constprop, ._omp_fn.N, ...) carry their parent's name;
* the direct call graph (call/jmp/jcc to a function of the module; a RIP-relative reference to a
  function's first byte, e.g. the lea that passes an OpenMP outlined body to GOMP_parallel,
  counts as a call from the function that takes the address);
* a function can be reached at: its variant's level (variant functions), the baseline (the
  entry points: exported functions without a caller inside the module, init/fini and
  .init_array/.fini_array, shared functions whose address is stored in data, e.g. vtables and
  pybind11's records), and the level of every caller, whichever is lowest. A shared function
  that nothing reaches (no branch, reference, relocation or export leads to it; in a
  position-independent module every address in data has a relocation) is dead code, listed
  but not a violation; --strict takes every shared function without a caller as an entry point;
* a violation is a function whose instructions need more than the level it can be reached at:
  it would raise SIGILL on a CPU of that level. Static initialisers and whatever they call run
  at load time on any CPU: they must be baseline;
* with the linker's map (made when the tool relinks, or --map), the object each kept body came
  from: a shared function kept from a unit compiled for a higher level than one of its callers
  is reported as LATENT (it needs nothing more today, but the compiler may use the level's
  instructions in any build; the link order should keep the lowest unit's body);
  a failure with --strict.

Note: LZCNT/TZCNT do not fault on CPUs without them (they run as BSR/BSF); gcc writes `rep bsf`
for some baseline count-trailing-zeros, which disassembles as tzcnt and is reported as v3.

Stripped modules (pybind11_add_module strips Release builds) have no function names. Then the
tool relinks the module without stripping from its CMake build directory (found under build/
next to this file, or --build-dir), with -Wl,-Map, checks that the relinked module is the same
code (every loaded section byte for byte) and reads the names from it. The relink is cached
under $XDG_CACHE_HOME/fastrnn-check-isa (keyed by the module's hash, checked again on use).
--symbols FILE gives an unstripped copy directly.

Exit status: 0 no violation, 1 violations, 2 the check could not run.
Usage: tools/check_isa.py [MODULE] [-v] [--strict] [--json FILE|-] [--symbols FILE] [--map FILE]
                          [--build-dir DIR] [--no-cache]
"""

from __future__ import annotations

import argparse
import bisect
import collections
import hashlib
import json
import os
import re
import shlex
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

LEVELS = [
    "baseline",
    "x86-64-v2",
    "x86-64-v3",
    "x86-64-v4",
    "x86-64-v4-bf16",
    "x86-64-v4-amx",
    "other",
]
BASE, V2, V3, V4, BF16, AMX, OTHER = range(7)
# variant namespace suffix (CMake's C identifier of the variant name) -> level
VARIANT_LEVEL = {
    "x86_64": BASE,
    "x86_64_v2": V2,
    "x86_64_v3": V3,
    "x86_64_v4": V4,
    "x86_64_v4_bf16": BF16,
    "x86_64_v4_amx": AMX,
}
VARIANT_NAME = {
    "x86_64": "x86-64",
    "x86_64_v2": "x86-64-v2",
    "x86_64_v3": "x86-64-v3",
    "x86_64_v4": "x86-64-v4",
    "x86_64_v4_bf16": "x86-64-v4-bf16",
    "x86_64_v4_amx": "x86-64-v4-amx",
}


class CheckError(Exception):
    """The check cannot run (exit status 2)."""


# --------------------------------------------------------------------------------------------
# ELF (64-bit little-endian) reading: sections, symbols, dynamic relocations
# --------------------------------------------------------------------------------------------
SHT_NOBITS, SHT_SYMTAB, SHT_DYNSYM, SHT_RELA = 8, 2, 11, 4
SHF_ALLOC = 0x2


class Elf:
    map_file: Path | None = None  # the linker map of a relink, when there is one

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data = path.read_bytes()
        d = self.data
        if d[:4] != b"\x7fELF" or d[4] != 2 or d[5] != 1:
            raise CheckError(f"{path}: not a 64-bit little-endian ELF file")
        self.machine = struct.unpack_from("<H", d, 18)[0]
        shoff = struct.unpack_from("<Q", d, 40)[0]
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", d, 58)
        raw = []
        for i in range(shnum):
            name, typ, flags, addr, off, size, link, _info, _align, entsize = struct.unpack_from(
                "<IIQQQQIIQQ", d, shoff + i * shentsize
            )
            raw.append(
                dict(
                    name_off=name,
                    type=typ,
                    flags=flags,
                    addr=addr,
                    offset=off,
                    size=size,
                    link=link,
                    entsize=entsize,
                    index=i,
                )
            )
        strtab = raw[shstrndx] if shnum else None
        for s in raw:
            s["name"] = self._str(strtab, s["name_off"]) if strtab else ""
        self.sections = raw

    def _str(self, sec: dict[str, Any], off: int) -> str:
        start = sec["offset"] + off
        end = self.data.index(b"\0", start)
        return self.data[start:end].decode("utf-8", "replace")

    def section(self, name: str) -> dict[str, Any] | None:
        return next((s for s in self.sections if s["name"] == name), None)

    def contents(self, s: dict[str, Any]) -> bytes:
        if s["type"] == SHT_NOBITS:
            return b""
        return self.data[s["offset"] : s["offset"] + s["size"]]

    def has_symtab(self) -> bool:
        s = self.section(".symtab")
        return s is not None and s["size"] > s["entsize"] * 16

    def symbols(self, which: str) -> list[tuple[str, int, int, int, int]]:
        """(name, value, size, type, shndx) of .symtab or .dynsym."""
        s = self.section(which)
        if s is None:
            return []
        strsec = self.sections[s["link"]]
        out = []
        for off in range(s["offset"], s["offset"] + s["size"], 24):
            name, info, _other, shndx, value, size = struct.unpack_from("<IBBHQQ", self.data, off)
            out.append((self._str(strsec, name), value, size, info & 0xF, shndx))
        return out

    def relocations(self) -> list[tuple[int, int, int, int]]:
        """(offset, type, symbol index, addend) of every RELA section that is loaded."""
        out = []
        for s in self.sections:
            if s["type"] != SHT_RELA or not s["flags"] & SHF_ALLOC:
                continue
            for off in range(s["offset"], s["offset"] + s["size"], 24):
                r_off, r_info, r_add = struct.unpack_from("<QQq", self.data, off)
                out.append((r_off, r_info & 0xFFFFFFFF, r_info >> 32, r_add))
        return out

    def loaded_image(self) -> list[tuple[str, int, int, int, bytes]]:
        """What the loader maps: every SHF_ALLOC section, its address, size and bytes."""
        return [
            (s["name"], s["type"], s["addr"], s["size"], self.contents(s))
            for s in self.sections
            if s["flags"] & SHF_ALLOC
        ]


def same_code(a: Elf, b: Elf) -> str | None:
    """None when both files load the same bytes at the same addresses, else the difference."""
    ia, ib = a.loaded_image(), b.loaded_image()
    if [x[:4] for x in ia] != [x[:4] for x in ib]:
        return "different loaded sections (names, addresses or sizes)"
    for x, y in zip(ia, ib, strict=True):
        if x[4] != y[4]:
            return f"section {x[0]} differs"
    return None


# --------------------------------------------------------------------------------------------
# Names for a stripped module
# --------------------------------------------------------------------------------------------
def candidate_build_dirs(module: Path) -> list[Path]:
    dirs = []
    for root in (REPO / "build", module.parent):
        if (root / "CMakeCache.txt").is_file():
            dirs.append(root)
        if root.is_dir():
            dirs += sorted(p.parent for p in root.glob("*/CMakeCache.txt"))
    seen, out = set(), []
    for d in dirs:
        if d.resolve() not in seen:
            seen.add(d.resolve())
            out.append(d)
    return out


def link_command(build_dir: Path, target: str) -> list[str]:
    """The command that links `target` in a CMake build directory, without the strip step."""
    if (build_dir / "build.ninja").is_file():
        ninja = None
        cache = (build_dir / "CMakeCache.txt").read_text(errors="replace")
        m = re.search(r"^CMAKE_MAKE_PROGRAM:[A-Z]+=(.*)$", cache, re.M)
        if m and Path(m.group(1)).is_file():
            ninja = m.group(1)
        ninja = ninja or shutil.which("ninja")
        if not ninja:
            raise CheckError(f"{build_dir}: a Ninja build, but no ninja program to ask")
        r = subprocess.run(
            [ninja, "-C", str(build_dir), "-t", "commands", "-s", target],
            capture_output=True,
            text=True,
        )
        if r.returncode != 0 or not r.stdout.strip():
            raise CheckError(f"ninja -t commands {target} failed: {r.stderr.strip()}")
        parts = r.stdout.strip().splitlines()[-1].split(" && ")
    else:
        link_txt = build_dir / "CMakeFiles" / "_core.dir" / "link.txt"
        if not link_txt.is_file():
            raise CheckError(f"{build_dir}: neither build.ninja nor {link_txt}")
        parts = link_txt.read_text().splitlines()
    for part in parts:
        argv = shlex.split(part)
        if "-o" in argv and Path(argv[argv.index("-o") + 1]).name == target:
            return argv
    raise CheckError(f"{build_dir}: no link command for {target}")


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fastrnn-check-isa"


def unstripped_copy(
    module: Elf, build_dirs: list[Path], workdir: Path, use_cache: bool = True
) -> tuple[Elf, str]:
    """Relink `module` without stripping from the build directory it came from (or take the
    relink cached for a module with the same bytes, verified again)."""
    key = hashlib.sha256(module.data).hexdigest()[:20]
    cached = cache_dir() / key
    if use_cache and (cached / "unstripped.so").is_file():
        try:
            c = Elf(cached / "unstripped.so")
            if same_code(module, c) is None and c.has_symtab():
                if (cached / "link.map").is_file():
                    c.map_file = cached / "link.map"
                return c, f"symbols from a cached relink ({cached}; same loaded bytes)"
        except (CheckError, OSError, ValueError):
            pass
    tried = []
    for bdir in build_dirs:
        built = [p for p in bdir.glob("_core*.so")] + [p for p in bdir.glob("_core*.pyd")]
        built = [p for p in built if p.is_file()]
        match = None
        for p in built:
            try:
                if same_code(module, Elf(p)) is None:
                    match = p
                    break
            except CheckError:
                continue
        if match is None:
            tried.append(f"{bdir}: no module there with the same code")
            continue
        argv = link_command(bdir, match.name)
        out = workdir / match.name
        argv[argv.index("-o") + 1] = str(out)
        # the linker's map says which object each kept body came from (it changes no output byte;
        # the comparison below checks that)
        argv.insert(argv.index("-o"), f"-Wl,-Map,{workdir / 'link.map'}")
        r = subprocess.run(argv, cwd=bdir, capture_output=True, text=True)
        if r.returncode != 0:
            tried.append(f"{bdir}: relinking failed: {r.stderr.strip()[-2000:]}")
            continue
        relinked = Elf(out)
        diff = same_code(module, relinked)
        if diff is not None:
            tried.append(f"{bdir}: the relinked module is not the same code ({diff})")
            continue
        if not relinked.has_symtab():
            tried.append(f"{bdir}: the relinked module has no symbol table either")
            continue
        relinked.map_file = workdir / "link.map"
        if use_cache:
            try:
                cached.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(out, cached / "unstripped.so")
                shutil.copyfile(workdir / "link.map", cached / "link.map")
            except OSError:
                pass
        return relinked, f"symbols from a relink in {bdir} (same loaded bytes as the module)"
    raise CheckError(
        "the module is stripped (no function names) and no unstripped copy was "
        "found; pass --symbols UNSTRIPPED_MODULE or --build-dir DIR.\n  "
        + "\n  ".join(tried or ["no CMake build directory found"])
    )


MAP_ONE_RE = re.compile(r"^ (\S+)\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+(\S.*)$")
MAP_TWO_RE = re.compile(r"^\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+(\S.*)$")
OBJ_VARIANT_RE = re.compile(r"fastrnn_kernels_([A-Za-z0-9_]+?)(?:\.dir/|\.a\b|\.lib\b)")


def read_map(path: Path) -> list[tuple[int, int, str]]:
    """(start, end, object) of every input section the linker placed, from a GNU ld map."""
    text = path.read_text(errors="replace")
    i = text.find("Linker script and memory map")
    out, pending = [], None
    for line in text[i:].splitlines():
        m = MAP_ONE_RE.match(line)
        if m and m.group(1).startswith("."):
            start, size, obj = int(m.group(2), 16), int(m.group(3), 16), m.group(4)
            pending = None
        elif pending and (m := MAP_TWO_RE.match(line)):
            start, size, obj = int(m.group(1), 16), int(m.group(2), 16), m.group(3)
            pending = None
        else:
            pending = line.startswith(" .") and len(line.split()) == 1
            continue
        if size and start and not obj.startswith("load address"):
            out.append((start, start + size, obj.strip()))
    out.sort()
    return out


def object_level(obj: str) -> tuple[int, str]:
    """The level an object file was compiled for, and a short name for it."""
    m = OBJ_VARIANT_RE.search(obj)
    short = obj.split(".dir/", 1)[1] if ".dir/" in obj else Path(obj).name
    if m:
        v = m.group(1)
        return VARIANT_LEVEL.get(v, AMX), f"{VARIANT_NAME.get(v, v)}:{Path(obj).name}"
    if "ltrans" in obj:
        return BASE, "LTO output (the -flto units: bindings)"
    return BASE, short


# --------------------------------------------------------------------------------------------
# Instruction classification
# --------------------------------------------------------------------------------------------
def _words(s: str) -> set[str]:
    return set(s.split())


V2_INSNS = _words("""
    addsubps addsubpd haddps haddpd hsubps hsubpd lddqu movddup movshdup movsldup
    fisttp fisttps fisttpl fisttpll monitor mwait
    pabsb pabsw pabsd palignr phaddw phaddd phaddsw phsubw phsubd phsubsw pmaddubsw pmulhrsw
    pshufb psignb psignw psignd
    blendpd blendps blendvpd blendvps dppd dpps extractps insertps movntdqa mpsadbw packusdw
    pblendvb pblendw pcmpeqq pextrb pextrd pextrq pinsrb pinsrd pinsrq phminposuw pmaxsb pmaxsd
    pmaxud pmaxuw pminsb pminsd pminud pminuw pmovsxbw pmovsxbd pmovsxbq pmovsxwd pmovsxwq
    pmovsxdq pmovzxbw pmovzxbd pmovzxbq pmovzxwd pmovzxwq pmovzxdq pmuldq pmulld ptest roundps
    roundpd roundss roundsd
    crc32 crc32b crc32w crc32l crc32q pcmpestri pcmpestrm pcmpistri pcmpistrm pcmpgtq
    popcnt cmpxchg16b lahf sahf
""")
# needs x86-64-v3 without a VEX prefix, or VEX-encoded general-purpose instructions
V3_INSNS = _words("""
    lzcnt tzcnt movbe andn bextr blsi blsmsk blsr bzhi pdep pext rorx sarx shlx shrx mulx
    xsave xsave64 xrstor xrstor64 xsetbv
""")
BF16_INSNS = _words("""
    vdpbf16ps vcvtne2ps2bf16 vcvtneps2bf16 vpdpbusd vpdpbusds vpdpwssd vpdpwssds
""")
# AMX-TILE, AMX-BF16, AMX-INT8 (Sapphire Rapids): VEX-encoded, on the tile registers %tmm0-7
AMX_INSNS = _words("""
    ldtilecfg sttilecfg tileloadd tileloaddt1 tilestored tilezero tilerelease
    tdpbf16ps tdpbssd tdpbsud tdpbusd tdpbuud
""")
# in no x86-64 level (-march=x86-64-v4 does not enable them): using one is always a violation
OTHER_INSNS = _words("""
    aesenc aesenclast aesdec aesdeclast aesimc aeskeygenassist vaesenc vaesenclast vaesdec
    vaesdeclast vaesimc vaeskeygenassist pclmulqdq vpclmulqdq sha1rnds4 sha1nexte sha1msg1
    sha1msg2 sha256rnds2 sha256msg1 sha256msg2 rdrand rdseed adcx adox clflushopt clwb
    xsaveopt xsavec xsaves rdpid movdiri movdir64b serialize extrq insertq movntss movntsd
    gf2p8affineinvqb gf2p8affineqb gf2p8mulb vgf2p8affineinvqb vgf2p8affineqb vgf2p8mulb
    vpmadd52luq vpmadd52huq vpermb vpermi2b vpermt2b vpmultishiftqb vpcompressb vpcompressw
    vpexpandb vpexpandw vpopcntb vpopcntw vpopcntd vpopcntq vpshufbitqmb vp2intersectd
    vp2intersectq vexp2ps vexp2pd vrcp28ps vrcp28pd vrcp28ss vrcp28sd vrsqrt28ps vrsqrt28pd
    vrsqrt28ss vrsqrt28sd femms
""")
# (tdp, tcmm, ...: the AMX extensions after Sapphire Rapids' -- FP16, COMPLEX, FP8, TF32,
# TRANSPOSE, MOVRS, AVX512 --, in no level; AMX_INSNS are taken out first)
OTHER_RE = re.compile(
    r"^(vpshl[dv]|vpshr[dv]|vgatherpf|vscatterpf|pf[a-z]+$"
    r"|tdp|ttdp|tcmm|ttcmm|tconj|tmmul|ttmmul|ttrans|t2rpn|tcvtrow|tilemov|tileloaddrs)"
)
# runs only after a CPUID check in correct code (the CPU detection): allowed anywhere, listed
GUARDED = _words("xgetbv")
# 'v' words that are not VEX/EVEX SIMD instructions (verify segment, VMX/SVM)
NOT_SIMD_V = _words("""
    verr verw vmcall vmlaunch vmresume vmxoff vmxon vmread vmwrite vmptrld vmptrst vmclear
    vmfunc vmrun vmload vmsave vmmcall
""")
# EVEX-only mnemonics (also recognised from the encoding; this list covers --no-raw output)
EVEX_ONLY_RE = re.compile(
    r"^v(pternlog[dq]|perm[ti]2|p?compress|p?expand|align[dq]|movdq[au](8|16|32|64)"
    r"|(extract|insert)[fi](32x4|32x8|64x2|64x4)|shuf[fi](32x4|64x2)"
    r"|broadcast[fi](32x2|32x4|32x8|64x2|64x4)|pbroadcastm|p?blendm|rndscale|rcp14|rsqrt14"
    r"|getexp|getmant|scalef|fixupimm|range|reduce|fpclass|ptestn?m|pconflict|plzcnt"
    r"|pro[lr]v?[dq]|psraq|psravq|pabsq|p(max|min)[su]q|pmullq|pmov(m2|[bwdq]2m)"
    r"|pmov(us|s)?(qb|qw|qd|db|dw|wb)$|cvt\w*(qq|udq|usi|uqq)|cvtu"
    r"|pcmp(u?[bwdq]|(lt|le|false|neq|nlt|nle|true)u?[bwdq]|equ[bwdq])$"
    r"|psllvw|psrlvw|psravw|permw$|dbpsadbw)"
)
EVEX_OPERAND_RE = re.compile(
    r"%zmm|%k[0-7]\b|\{%k[0-7]\}|\{z\}|\{1to\d+\}|\{r[nduz]-sae\}|\{sae\}"
    r"|%[xy]mm(1[6-9]|2[0-9]|3[01])\b"
)
LEGACY_PREFIXES = {0x66, 0x67, 0xF2, 0xF3, 0x2E, 0x3E, 0x26, 0x36, 0x64, 0x65, 0xF0}
PREFIX_WORDS = _words("""
    lock rep repz repe repnz repne notrack bnd data16 data32 addr32 addr16 cs ds es ss fs gs
    xacquire xrelease {vex} {vex2} {vex3} {evex} {disp8} {disp32} {load} {store} {nooptimize}
""")


_PREFIX_HEX = {f"{b:02x}" for b in LEGACY_PREFIXES}


def encoding(raw: str) -> str:
    """'vex', 'evex' or 'legacy' from the instruction's bytes (hex, space-separated)."""
    for tok in raw.split():
        if tok in _PREFIX_HEX:
            continue
        if tok == "c4" or tok == "c5":
            return "vex"  # LES/LDS do not exist in 64-bit mode
        if tok == "62":
            return "evex"  # BOUND does not exist in 64-bit mode
        return "legacy"
    return "legacy"


_legacy_cache: dict[tuple[str, bool], tuple[int, frozenset[str]]] = {}


def classify_fast(mnem: str, ops: str, enc: str) -> tuple[int, frozenset[str] | set[str]]:
    """classify(), memoised for legacy-encoded instructions (no EVEX operand is possible there;
    only pextrw's memory form depends on the operands)."""
    if enc != "legacy":
        return classify(mnem, ops, enc)
    key = (mnem, mnem == "pextrw" and "(" in ops)
    r = _legacy_cache.get(key)
    if r is None:
        lvl, tags = classify(mnem, ops, enc)
        r = _legacy_cache[key] = (lvl, frozenset(tags))
    return r


def classify(mnem: str, ops: str, enc: str) -> tuple[int, set[str]]:
    """The level an instruction needs, and tags for the summary."""
    tags: set[str] = set()
    level = BASE
    base = mnem
    if base[-1:] in "bwlq" and base[:-1] in V2_INSNS | V3_INSNS:  # AT&T size suffix
        base = base[:-1]
    if enc == "vex":
        tags.add("vex")
        level = V3
    elif enc == "evex":
        tags.add("evex")
        level = V4
    if base in V2_INSNS or (mnem == "pextrw" and "(" in ops.split(",")[-1]):
        level = max(level, V2)
    if base in V3_INSNS:
        level = max(level, V3)
    if mnem.startswith("v") and mnem not in NOT_SIMD_V:
        tags.add("simd-v")
        level = max(level, V3)
        if EVEX_ONLY_RE.match(mnem):
            if enc == "evex":
                pass
            elif enc == "vex":  # the bytes decide; the list is only a cross-check
                tags.add("mismatch:" + mnem)
            else:
                level = max(level, V4)
    if mnem.startswith("k") and mnem[1:3] in (
        "mo",
        "an",
        "or",
        "xo",
        "xn",
        "no",
        "sh",
        "te",
        "un",
        "ad",
    ):
        tags.add("kreg")
        level = max(level, V4)
    m = EVEX_OPERAND_RE.search(ops)
    if m:
        level = max(level, V4)
        if "%zmm" in ops:
            tags.add("zmm")
        if re.search(r"%k[0-7]\b", ops):
            tags.add("kreg")
    if "%ymm" in ops:
        tags.add("ymm")
    level = max(level, extension_level(mnem, base, ops, enc, tags))
    if mnem in GUARDED:
        tags.add("guarded")
    return level, tags


def extension_level(mnem: str, base: str, ops: str, enc: str, tags: set[str]) -> int:
    """The level of the extensions above x86-64-v4 (BF16/VNNI, AMX, those in no level), or
    BASE: a step of classify()."""
    level = BASE
    if mnem in BF16_INSNS:
        tags.add("bf16/vnni")
        level = OTHER if enc == "vex" else BF16  # VEX: AVX-VNNI, in no level
    if mnem in AMX_INSNS or "%tmm" in ops:  # (a later AMX extension's: OTHER, below)
        tags.add("amx")
        level = max(level, AMX)
    if mnem in OTHER_INSNS or base in OTHER_INSNS:
        level = OTHER
    if OTHER_RE.match(mnem) and mnem not in AMX_INSNS:
        level = OTHER
    if mnem.startswith("v") and re.search(r"(ph|sh)$", mnem) and mnem != "vcvtps2ph":
        level = OTHER  # AVX512-FP16
    return level


# --------------------------------------------------------------------------------------------
# Disassembly
# --------------------------------------------------------------------------------------------
HEADER_RE = re.compile(r"^([0-9a-f]+) <(.*)>:$")
INSN_RE = re.compile(r"^ *([0-9a-f]+):\t([0-9a-f ]*)\t(.*)$")
TARGET_RE = re.compile(r"^([0-9a-f]+) <")
RIPREF_RE = re.compile(r"# ([0-9a-f]+) <")
OWNER_RE = re.compile(r"(?<![A-Za-z0-9_])(?:isa|fastrnn_eigen)_([A-Za-z0-9_]+?)::")
CLONE_RE = re.compile(
    r"( \[clone [^\]]*\]|\.(cold|part|isra|constprop|lto_priv|_omp_fn|localalias)"
    r"(\.\d+)?)+$"
)
BRANCHES = {"call", "jmp", "loop", "loope", "loopne", "jrcxz", "jecxz"}


class Func:
    __slots__ = (
        "addr",
        "callees",
        "end",
        "examples",
        "level",
        "name",
        "ninsn",
        "owner",
        "section",
        "tags",
        "takes",
    )

    def __init__(self, addr: int, name: str, section: str) -> None:
        self.addr, self.name, self.section = addr, name, section
        self.end = addr
        self.owner = "shared"
        self.level = BASE
        self.ninsn = 0
        self.tags: collections.Counter[str] = collections.Counter()
        self.examples: dict[int, list[str]] = {}
        self.callees: set[int] = set()  # target addresses of direct branches
        self.takes: set[int] = set()  # RIP-relative references (addresses)


def owner_of(name: str) -> str:
    ns = set(OWNER_RE.findall(CLONE_RE.sub("", name)))
    if not ns:
        return "shared"
    if len(ns) > 1:  # a name mixing two variants' namespaces: should not exist
        return "mixed:" + ",".join(sorted(ns))
    return str(ns.pop())


def disassemble(objdump: str, path: Path) -> list[Func]:
    r = subprocess.run([objdump, "-d", "-w", "-C", str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        raise CheckError(f"objdump failed: {r.stderr.strip()}")
    funcs: list[Func] = []
    cur: Func | None = None
    section = ""
    for line in r.stdout.splitlines():
        if not line:
            continue
        if line[0] == " ":
            m = INSN_RE.match(line)
            if m is None or cur is None:
                continue
            text = m.group(3)
            words = text.split(None, 1)
            while words and words[0] in PREFIX_WORDS:
                words = words[1].split(None, 1) if len(words) > 1 else []
            if not words:
                continue
            mnem = words[0]
            ops = words[1] if len(words) > 1 else ""
            nbytes = len(m.group(2).split())
            addr = int(m.group(1), 16)
            cur.end = max(cur.end, addr + nbytes)
            cur.ninsn += 1
            enc = encoding(m.group(2))
            level, tags = classify_fast(mnem, ops, enc)
            for t in tags:
                cur.tags[t] += 1
            if level > BASE:
                cur.tags[LEVELS[level]] += 1
                ex = cur.examples.setdefault(level, [])
                if len(ex) < 3:
                    ex.append(f"{addr:x}: {mnem} {ops}".strip())
                if level > cur.level:
                    cur.level = level
            if mnem in BRANCHES or (mnem[0] == "j"):
                tm = TARGET_RE.match(ops)
                if tm:
                    cur.callees.add(int(tm.group(1), 16))
            elif "(%rip)" in ops:
                tm = RIPREF_RE.search(ops)
                if tm:
                    cur.takes.add(int(tm.group(1), 16))
            continue
        if line.startswith("Disassembly of section "):
            section = line[len("Disassembly of section ") :].rstrip(":")
            continue
        m = HEADER_RE.match(line)
        if m:
            cur = Func(int(m.group(1), 16), m.group(2), section)
            cur.end = cur.addr
            funcs.append(cur)
    return funcs


# --------------------------------------------------------------------------------------------
# The analysis
# --------------------------------------------------------------------------------------------
def analyse(module: Path, symbols: Elf, objdump: str, strict: bool = False) -> dict[str, Any]:
    funcs = [f for f in disassemble(objdump, symbols.path) if f.ninsn > 0]
    funcs.sort(key=lambda f: f.addr)
    # code sections whose "functions" are stubs into other libraries
    external_sections = {".plt", ".plt.got", ".plt.sec"}
    internal = [f for f in funcs if f.section not in external_sections]
    starts = [f.addr for f in internal]
    by_addr = {f.addr: f for f in internal}

    def containing(addr: int) -> Func | None:
        i = bisect.bisect_right(starts, addr) - 1
        if i >= 0 and internal[i].addr <= addr < max(internal[i].end, internal[i].addr + 1):
            return internal[i]
        return None

    variants_seen: set[str] = set()
    anomalies: list[str] = []
    for f in internal:
        f.owner = owner_of(f.name)
        if f.owner.startswith("mixed:"):
            anomalies.append(f"{f.name}: its name has several variants' namespaces")
        elif f.owner != "shared":
            variants_seen.add(f.owner)
    unknown = sorted(v for v in variants_seen if v not in VARIANT_LEVEL)
    if unknown:
        anomalies.append(f"variants of unknown level (treated as x86-64-v4-amx): {unknown}")

    def own_level(f: Func) -> int | None:
        if f.owner == "shared":
            return None
        if f.owner.startswith("mixed:"):
            return BASE
        return VARIANT_LEVEL.get(f.owner, AMX)

    # edges: direct branches into another function, and references to a function's first byte
    callers: dict[int, set[int]] = collections.defaultdict(set)
    for f in internal:
        for t in f.callees:
            g = containing(t)
            if g is not None and g is not f:
                callers[g.addr].add(f.addr)
        for t in f.takes:
            g = by_addr.get(t)
            if g is not None and g is not f:
                callers[g.addr].add(f.addr)

    # A .cold part may be entered only by the unwinder (landing pads moved out of line): its
    # parent reaches it even without a jump to it.
    by_name: dict[str, list[Func]] = collections.defaultdict(list)
    for f in internal:
        by_name[f.name].append(f)
    cold_unmatched = []
    for f in internal:
        for suffix in (" [clone .cold]", ".cold"):
            if f.name.endswith(suffix):
                # (several same-named local functions: all of them, the lowest level wins)
                parents = by_name.get(f.name[: -len(suffix)], [])
                for p in parents:
                    callers[f.addr].add(p.addr)
                if not parents:
                    cold_unmatched.append(f.name)
                break

    # Entry points, reached at the baseline. A function of the module can only be entered by a
    # direct branch, a RIP-relative reference to it (its address taken in code), an address in
    # data (every one has a dynamic relocation in a position-independent module), the dynamic
    # symbol table (exported) or DT_INIT/DT_FINI; all of them are looked at here.
    roots: dict[int, str] = {}
    load_time: dict[int, str] = {}
    elf = symbols
    dynsyms = elf.symbols(".dynsym")
    exported: dict[int, str] = {}
    for name, value, _size, typ, shndx in dynsyms:
        if typ in (2, 10) and shndx != 0 and value in by_addr:  # STT_FUNC/GNU_IFUNC, defined
            exported[value] = name
    init_arrays = [
        s
        for s in elf.sections
        if s["name"] in (".init_array", ".fini_array", ".preinit_array", ".ctors", ".dtors")
    ]

    def in_init_array(off: int) -> str | None:
        for s in init_arrays:
            if s["addr"] <= off < s["addr"] + s["size"]:
                return str(s["name"])
        return None

    for s in init_arrays:  # entries the linker filled in (when not relocated at load time)
        data = elf.contents(s)
        for i in range(0, len(data) - 7, 8):
            v = struct.unpack_from("<Q", data, i)[0]
            if v in by_addr:
                load_time[v] = f"listed in {s['name']}"
    data_refs: dict[int, int] = {}
    for off, typ, symi, addend in elf.relocations():
        if typ in (8, 37):  # R_X86_64_RELATIVE, IRELATIVE
            target = addend
        elif typ in (1, 6) and symi < len(dynsyms) and dynsyms[symi][4] != 0:  # 64, GLOB_DAT
            target = dynsyms[symi][1] + addend
        else:
            continue
        if target not in by_addr:
            continue
        where = in_init_array(off)
        if where:
            load_time[target] = f"listed in {where}"
        else:
            data_refs.setdefault(target, off)
    for f in internal:
        if f.section in (".init", ".fini"):
            load_time[f.addr] = f"in section {f.section}"
        bare = CLONE_RE.sub("", f.name)
        if bare.startswith(
            (
                "_GLOBAL__sub_I",
                "_GLOBAL__sub_D",
                "_GLOBAL__I",
                "_GLOBAL__D",
                "__static_initialization_and_destruction",
            )
        ):
            load_time.setdefault(f.addr, "static initialiser (by name)")
    for a, off in data_refs.items():
        if own_level(by_addr[a]) is None:  # a variant's table of entry points: its own level
            roots[a] = f"its address is stored in data at {off:#x} (vtable, table, callback)"

    def outside_callers(a: int) -> set[int]:
        """Callers of `a` other than its own pieces (its .cold part jumping back, recursion)."""
        base = CLONE_RE.sub("", by_addr[a].name)
        return {c for c in callers.get(a, ()) if CLONE_RE.sub("", by_addr[c].name) != base}

    for a in exported:
        if not outside_callers(a):
            roots.setdefault(a, "exported, no caller inside the module")
    if strict:  # the conservative rule: anything without a known caller is an entry point
        for f in internal:
            if own_level(f) is None and not outside_callers(f.addr):
                roots.setdefault(f.addr, "no caller inside the module (--strict)")
    for f in internal:  # a .cold part without a parent of its name: the unwinder may enter it
        if f.name in cold_unmatched and own_level(f) is None and not callers.get(f.addr):
            roots.setdefault(f.addr, "a .cold part (landing pads) without a known parent")
    for a, why in load_time.items():
        roots[a] = "load time: " + why

    # the lowest level each function can run at: propagate to a fixed point
    INF = 99
    reach: dict[int, int] = {}
    pred: dict[int, int | None] = {}
    for f in internal:
        lvl = own_level(f)
        reach[f.addr] = lvl if lvl is not None else INF
        pred[f.addr] = None
        if f.addr in roots:
            reach[f.addr] = BASE
    callees_of: dict[int, set[int]] = collections.defaultdict(set)
    for ga, cs in callers.items():
        for c in cs:
            callees_of[c].add(ga)
    work = collections.deque(a for a in reach if reach[a] < INF)
    while work:
        a = work.popleft()
        for ga in callees_of.get(a, ()):
            if reach[a] < reach[ga]:
                reach[ga] = reach[a]
                pred[ga] = a
                work.append(ga)
    # Shared functions nothing reaches: no branch, reference, relocation or export leads to them
    # (e.g. a local clone whose only caller was a COMDAT copy the linker discarded). Dead code.
    dead = [f for f in internal if reach[f.addr] == INF]

    # load-time closure: everything a static initialiser runs
    at_load: dict[int, int | None] = {}
    stack = list(load_time)
    for a in stack:
        at_load[a] = None
    while stack:
        a = stack.pop()
        for ga in callees_of.get(a, ()):
            if ga not in at_load:
                at_load[ga] = a
                stack.append(ga)

    def chain(start: int) -> list[str]:
        out: list[str] = []
        seen: set[int] = set()
        cur: int | None = start
        while cur is not None and cur not in seen:
            seen.add(cur)
            f = by_addr[cur]
            lvl = own_level(f)
            label = f"[{LEVELS[lvl] if lvl is not None else 'shared'}] {f.name}"
            if pred[cur] is None and cur in roots:
                label += f"  <- {roots[cur]}"
            out.append(label)
            cur = pred[cur]
        return out

    violations = []
    for f in internal:
        r = reach[f.addr]
        if f.level > r and f.addr not in at_load:  # those are load-time violations (below)
            violations.append(
                {
                    "function": f.name,
                    "address": f"{f.addr:#x}",
                    "owner": f.owner,
                    "needs": LEVELS[f.level],
                    "reached_at": LEVELS[r],
                    "examples": f.examples.get(f.level, []),
                    "callers": sorted(by_addr[c].name for c in callers.get(f.addr, ()))[:10],
                    "chain": chain(f.addr),
                }
            )
    load_violations = []
    for a, via in at_load.items():
        f = by_addr[a]
        if f.level > BASE:
            load_violations.append(
                {
                    "function": f.name,
                    "address": f"{a:#x}",
                    "needs": LEVELS[f.level],
                    "examples": f.examples.get(f.level, []),
                    "called_from": by_addr[via].name if via is not None else load_time.get(a, ""),
                }
            )

    # summary per owner
    summary: dict[str, Any] = {}
    for f in internal:
        s = summary.setdefault(
            f.owner,
            {
                "functions": 0,
                "bytes": 0,
                "instructions": 0,
                "functions_needing": {l: 0 for l in LEVELS},
                "instructions_with": collections.Counter(),
            },
        )
        s["functions"] += 1
        s["bytes"] += f.end - f.addr
        s["instructions"] += f.ninsn
        s["functions_needing"][LEVELS[f.level]] += 1
        s["instructions_with"].update(f.tags)
    for s in summary.values():
        s["instructions_with"] = dict(sorted(s["instructions_with"].items()))
    # Where each kept body came from (with a linker map): a shared function kept from a unit
    # compiled for a higher level than some caller's may use that level's instructions in a
    # later build even when this one happens not to: the link order is what must prevent it.
    latent = []
    origin_counts: collections.Counter[str] = collections.Counter()
    origin: dict[int, str] = {}
    if symbols.map_file is not None and symbols.map_file.is_file():
        spans = read_map(symbols.map_file)
        span_starts = [x[0] for x in spans]
        for f in internal:
            i = bisect.bisect_right(span_starts, f.addr) - 1
            if i < 0 or not spans[i][0] <= f.addr < spans[i][1]:
                continue
            olvl, oname = object_level(spans[i][2])
            origin[f.addr] = oname
            if f.owner == "shared":
                origin_counts[oname] += 1
            lvl = own_level(f)
            if lvl is not None and lvl != olvl:
                anomalies.append(
                    f"{shorten(f.name)}: in variant {f.owner}'s namespace but its "
                    f"body comes from {oname}"
                )
            r = reach[f.addr]
            if olvl > r and r < INF and lvl is None:
                latent.append(
                    {
                        "function": f.name,
                        "address": f"{f.addr:#x}",
                        "from": oname,
                        "compiled_for": LEVELS[olvl],
                        "reached_at": LEVELS[r],
                        "needs": LEVELS[f.level],
                        "chain": chain(f.addr),
                    }
                )

    def lvl_name(lvl: int) -> str:
        return LEVELS[lvl] if lvl < INF else "nowhere (dead code)"

    shared_above: list[dict[str, Any]] = [
        {
            "function": f.name,
            "address": f"{f.addr:#x}",
            "needs": LEVELS[f.level],
            "reached_at": lvl_name(reach[f.addr]),
            "examples": f.examples.get(f.level, []),
            "callers": sorted({by_addr[c].owner for c in callers.get(f.addr, ())}),
            "exported": f.addr in exported,
            "from": origin.get(f.addr, ""),
        }
        for f in internal
        if f.owner == "shared" and f.level > BASE
    ]
    dead_above = [x for x in shared_above if x["reached_at"].startswith("nowhere")]
    guarded = [f"{f.name}: {f.tags['guarded']} x xgetbv" for f in internal if f.tags["guarded"]]
    warnings = list(anomalies)
    mism = collections.Counter(t for f in internal for t in f.tags if t.startswith("mismatch:"))
    if mism:
        warnings.append(
            "EVEX-only by the mnemonic list but VEX-encoded (fix the list): "
            + ", ".join(t[9:] for t in sorted(mism))
        )
    for x in shared_above:
        if x["exported"]:
            warnings.append(
                f"exported (default visibility, e.g. a std:: template) and needs {x['needs']}: "
                f"{x['function']} -- another library could bind to this body when the module "
                f"is loaded with RTLD_GLOBAL"
            )
    for v in sorted(variants_seen):
        lvl = VARIANT_LEVEL.get(v)
        top = max((f.level for f in internal if f.owner == v), default=BASE)
        if lvl is not None and top < lvl:
            warnings.append(
                f"variant {VARIANT_NAME.get(v, v)}: no function uses an instruction "
                f"of its own level (highest: {LEVELS[top]}); its flags buy nothing"
            )
    return {
        "module": str(module),
        "functions": len(internal),
        "variants": sorted(variants_seen, key=lambda v: VARIANT_LEVEL.get(v, 9)),
        "violations": violations,
        "load_time_violations": load_violations,
        "load_time_functions": sorted(by_addr[a].name for a in at_load),
        "summary": summary,
        "shared_above_baseline": shared_above,
        "dead_above_baseline": dead_above,
        "latent": latent,
        "provenance": dict(origin_counts) if symbols.map_file is not None else None,
        "dead_functions": len(dead),
        "dead_names": sorted(f.name for f in dead),
        "exported_functions": sorted(exported.values()),
        "guarded": guarded,
        "warnings": warnings,
        "roots": len(roots),
        "edges": sum(len(v) for v in callers.values()),
    }


def shorten(name: str, width: int = 150) -> str:
    """A long C++ name with its template arguments elided, for one line."""
    out, depth = [], 0
    for ch in name:
        if ch == "<":
            if depth == 0:
                out.append("<...")
            depth += 1
        elif ch == ">" and depth:
            depth -= 1
            if depth == 0:
                out.append(">")
        elif depth == 0:
            out.append(ch)
    s = "".join(out)
    m = re.search(r"( \[clone [^\]]*\])+$", s)
    tail = m.group(0) if m else ""
    s = s[: len(s) - len(tail)]
    width = max(20, width - len(tail))
    return (s if len(s) <= width else s[: width - 3] + "...") + tail


def print_report(res: dict[str, Any], verbose: bool, out: Any = sys.stdout) -> None:
    def p(*a: Any) -> None:
        print(*a, file=out)

    p(f"module: {res['module']}")
    p(f"  {res['symbols_from']}")
    p(
        f"  {res['functions']} functions, {res['edges']} call edges, {res['roots']} entry points "
        f"at the baseline, {res['dead_functions']} unreachable (dead) functions; variants: "
        f"{', '.join(VARIANT_NAME.get(v, v) for v in res['variants']) or 'none'}"
    )
    p("")
    short = ["baseline", "v2", "v3", "v4", "v4-bf16", "v4-amx", "other"]
    p("functions by the level their instructions need, per owner:")
    p(
        f"  {'owner':<16}{'funcs':>7}{'KiB':>7}  "
        + "".join(f"{s:>9}" for s in short)
        + "   instructions: vex / evex / ymm / zmm / k-reg / bf16,vnni / amx"
    )
    order = sorted(res["summary"], key=lambda o: (o != "shared", VARIANT_LEVEL.get(o, 9), o))
    for o in order:
        s = res["summary"][o]
        w = s["instructions_with"]
        p(
            f"  {VARIANT_NAME.get(o, o):<16}{s['functions']:>7}{s['bytes'] / 1024:>7.0f}  "
            + "".join(f"{s['functions_needing'][l]:>9}" for l in LEVELS)
            + f"   {w.get('vex', 0)} / {w.get('evex', 0)} / {w.get('ymm', 0)} / "
            f"{w.get('zmm', 0)} / {w.get('kreg', 0)} / {w.get('bf16/vnni', 0)} / "
            f"{w.get('amx', 0)}"
        )
    p("")
    sa = res["shared_above_baseline"]
    if sa:
        p(
            f"shared functions (outside the variant namespaces) that need more than the baseline: "
            f"{len(sa)}; each must be reached only at its level or above:"
        )
        for x in sa:
            where = f" (kept from {x['from']})" if x["from"] else ""
            if verbose:
                callers = ", ".join(VARIANT_NAME.get(c, c) for c in x["callers"]) or "none"
                p(
                    f"  needs {x['needs']}, reached at {x['reached_at']}, callers: {callers}"
                    f"{where}{'  [exported]' if x['exported'] else ''}"
                )
                p(f"      {x['address']} {x['function']}")
                for e in x["examples"]:
                    p(f"        {e}")
            else:
                p(
                    f"  needs {x['needs'][7:] or x['needs']:<8} reached at "
                    f"{x['reached_at'].replace('x86-64-', ''):<20} {shorten(x['function'], 90)}"
                    f"{where}"
                )
        p("")
    if res["provenance"] is None:
        p("provenance of the kept bodies: not checked (needs a relink with a linker map)")
    else:
        p(
            "shared functions by the object their kept body came from: "
            + ", ".join(f"{k} {v}" for k, v in sorted(res["provenance"].items()))
        )
        if res["latent"]:
            p(
                f"LATENT: {len(res['latent'])} shared function(s) kept from a unit compiled for a "
                f"higher level than code that calls them (no instruction above the caller's level "
                f"today, but nothing stops the compiler from using one):"
            )
            for x in res["latent"]:
                p(
                    f"  compiled for {x['compiled_for']} ({x['from']}), reached at "
                    f"{x['reached_at']}, needs {x['needs']}: "
                    f"{x['function'] if verbose else shorten(x['function'])}"
                )
                for c in x["chain"][1 : (50 if verbose else 4)]:
                    p(f"      <- {c if verbose else shorten(c, 140)}")
        else:
            p(
                "every shared function's kept body was compiled for a level no higher than its "
                "callers'"
            )
    p("")
    if res["guarded"]:
        p("instructions allowed because the code checks CPUID first: " + "; ".join(res["guarded"]))
    p(
        f"load-time code (static initialisers and their callees): "
        f"{len(res['load_time_functions'])} functions"
        + (": " + ", ".join(res["load_time_functions"]) if verbose else "")
    )
    for w in res["warnings"]:
        p(f"warning: {w}")
    p("")
    for v in res["load_time_violations"]:
        p(
            f"LOAD-TIME VIOLATION: {v['function']} ({v['address']}) needs {v['needs']} and runs "
            f"at load time (from {v['called_from']})"
        )
        for e in v["examples"]:
            p(f"    {e}")
    for v in res["violations"]:
        owner = VARIANT_NAME.get(v["owner"], v["owner"])
        p(
            f"VIOLATION: {v['function']} ({v['address']}, owner {owner}) "
            f"needs {v['needs']} but is reached at {v['reached_at']}"
        )
        for e in v["examples"]:
            p(f"    {e}")
        p("    reached through (callee first):")
        for c in v["chain"][: (50 if verbose else 6)]:
            p(f"      {c}")
        if verbose and v["callers"]:
            p("    direct callers: " + "; ".join(v["callers"]))
    n = len(res["violations"]) + len(res["load_time_violations"])
    p(f"{n} violation(s)" if n else "OK: no function needs more than the level it is reached at")


def default_module() -> Path:
    import fastrnn._core as core  # the module this interpreter imports

    return Path(core.__file__)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("module", nargs="?", help="the built module (default: fastrnn._core's file)")
    ap.add_argument("--symbols", help="an unstripped link of the same module")
    ap.add_argument(
        "--map",
        help="the GNU ld map (-Wl,-Map) of the link, for the provenance of the kept bodies "
        "(made automatically when the tool relinks a stripped module)",
    )
    ap.add_argument(
        "--build-dir",
        action="append",
        default=[],
        help="CMake build directory to relink a stripped module from (repeatable)",
    )
    ap.add_argument(
        "--no-cache",
        action="store_true",
        help="relink even when a relink of the same module is cached "
        "(in $XDG_CACHE_HOME/fastrnn-check-isa)",
    )
    ap.add_argument("--objdump", default=os.environ.get("OBJDUMP", "objdump"))
    ap.add_argument("--json", help="write the full result as JSON to this file ('-': stdout)")
    ap.add_argument(
        "--strict",
        action="store_true",
        help="also take every shared function without a caller in the module as an "
        "entry point at the baseline (default: only those with an export, a "
        "data reference or at load time; the others are dead code)",
    )
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    try:
        objdump = shutil.which(args.objdump)
        if not objdump:
            raise CheckError(f"{args.objdump} not found (GNU binutils)")
        module = Path(args.module) if args.module else default_module()
        elf = Elf(module)
        if elf.machine != 62:
            raise CheckError(f"{module}: not an x86-64 file")
        with tempfile.TemporaryDirectory(prefix="check_isa_") as tmp:
            if elf.has_symtab():
                sym, how = elf, "symbols from the module itself"
            elif args.symbols:
                sym = Elf(Path(args.symbols))
                diff = same_code(elf, sym)
                if diff is not None:
                    raise CheckError(f"--symbols {args.symbols} is not the same code ({diff})")
                if not sym.has_symtab():
                    raise CheckError(f"--symbols {args.symbols} has no symbol table")
                how = f"symbols from {args.symbols} (same loaded bytes as the module)"
            else:
                dirs = [Path(d) for d in args.build_dir] or candidate_build_dirs(module)
                sym, how = unstripped_copy(elf, dirs, Path(tmp), not args.no_cache)
            if args.map:
                sym.map_file = Path(args.map)
            res = analyse(module, sym, objdump, args.strict)
        res["symbols_from"] = how
    except CheckError as e:
        print(f"check_isa: cannot check: {e}", file=sys.stderr)
        return 2
    res["seconds"] = round(time.monotonic() - t0, 2)
    if args.json:
        text = json.dumps(res, indent=1)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text)
    if args.json != "-":
        print_report(res, args.verbose)
        print(f"({res['seconds']} s)")
    bad = res["violations"] or res["load_time_violations"] or (args.strict and res["latent"])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
