"""The documentation runs as written: README.md and docs/**/*.md.

* Every ```python block is run as pasted, top to bottom, in a fresh interpreter
  (``sys.executable -W error``, a temporary working directory, a timeout). A failure names the
  file and the line of the Markdown that raised, with the error. A block that imports an optional
  package (torch, onnx, onnxruntime, keras, matplotlib; ``fastrnn.torch`` needs torch and
  ``fastrnn.onnx`` onnx) is skipped when that package is not installed.
* Every relative link points to a file that exists, and its ``#anchor`` (if any) to a heading of
  that file; every page of docs/ is listed in docs/index.md (and in its toctrees: the Sphinx
  build, which warns about a page in none, is run by .ci/run with the command CONTRIBUTING.md
  gives, checked here to be the same).

The machinery itself is tested on small made-up pages, so that a broken block or a dead link is
known to fail.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
TIMEOUT = 180  # seconds per block; each takes a few (most of it importing numpy and torch)

# what a block's imports need beyond fastrnn's own dependency (numpy): module -> distribution
OPTIONAL = {
    "torch": "torch",
    "onnx": "onnx",
    "onnxruntime": "onnxruntime",
    "keras": "keras",
    "tensorflow": "tensorflow",
    "matplotlib": "matplotlib",
    "fastrnn.torch": "torch",
    "fastrnn.onnx": "onnx",
}

# CommonMark: an opening fence of 3+ backticks (no backtick in its info string) or tildes, and a
# closing fence of the same character, at least as long, alone on its line
# The blocks are examples, not timings: one kernel thread unless the caller chose otherwise. On a
# machine busy with other processes a team of spinning threads that meets at every step can be
# 25x slower than one thread (docs/threads.md).
ENV = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}

_FENCE = re.compile(r"^ {0,3}(`{3,}(?=[^`]*$)|~{3,})\s*([\w+-]*)")


def _closes(line: str, fence: str) -> bool:
    s = line.strip()
    return s.startswith(fence) and set(s) == {fence[0]} and len(line) - len(line.lstrip()) <= 3


@dataclass
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str

    @property
    def where(self) -> str:
        return f"{_name(self.page)}:{self.line}"


def _name(page: Path) -> str:
    """A page's path from the repository's root, as the messages name it (else its name)."""
    return page.relative_to(ROOT).as_posix() if page.is_relative_to(ROOT) else page.name


def fenced_blocks(text: str, page: Path) -> list[Block]:
    """The fenced code blocks of a Markdown text, with the line of each opening fence."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, lang, start = m.group(1), m.group(2).lower(), i
        body: list[str] = []
        i += 1
        while i < len(lines) and not _closes(lines[i], fence):
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise ValueError(f"{page}:{start + 1}: the code block is never closed")
        blocks.append(Block(page, start + 1, lang, "\n".join(body) + "\n"))
        i += 1
    return blocks


def outside_code(text: str) -> list[tuple[int, str]]:
    """(line number, line) of the text outside fenced code blocks."""
    out = []
    in_fence: str | None = None
    for n, line in enumerate(text.splitlines(), 1):
        m = _FENCE.match(line)
        if in_fence is None and m:
            in_fence = m.group(1)
        elif in_fence is not None and _closes(line, in_fence):
            in_fence = None
        elif in_fence is None:
            out.append((n, line))
    return out


def prose(text: str) -> list[tuple[int, str]]:
    """The lines outside fenced code blocks, inline code spans removed."""
    return [(n, re.sub(r"(`+).*?\1", "", line)) for n, line in outside_code(text)]


def missing_packages(code: str) -> list[str]:
    """The optional packages the block imports that are not installed."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    need = set()
    for name in names:
        parts = name.split(".")
        for k in range(1, len(parts) + 1):
            if ".".join(parts[:k]) in OPTIONAL:
                need.add(OPTIONAL[".".join(parts[:k])])
    return sorted(p for p in need if importlib.util.find_spec(p) is None)


def run_block(block: Block, workdir: Path, timeout: float = TIMEOUT) -> str | None:
    """Run the block in a fresh interpreter in ``workdir``; None if it succeeds, else the error:
    the file and line of the Markdown that raised, and the traceback's last lines."""
    script = workdir / f"block_{block.page.stem}_{block.line}.py"
    script.write_text(block.code)
    try:
        r = subprocess.run(
            [sys.executable, "-W", "error", script.name],
            cwd=workdir,
            env=ENV,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return f"{block.where}: the block did not finish within {timeout} s"
    if r.returncode == 0 and not r.stderr.strip():
        return None
    # the last frame of the traceback inside the block gives the line in the Markdown file
    frames = re.findall(rf'File "[^"]*{re.escape(script.name)}", line (\d+)', r.stderr)
    where = block.where
    if frames:
        where = f"{where.rsplit(':', 1)[0]}:{block.line + int(frames[-1])}"
    tail = "\n".join(r.stderr.strip().splitlines()[-12:])
    what = "raised" if r.returncode else "wrote to stderr (a warning?)"
    return f"{where}: the block starting at line {block.line} {what}:\n{tail}"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`([^`]*)`", r"\1", heading.strip())
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


_INCLUDE = re.compile(r"^ {0,3}(`{3,}|~{3,})\{include\}\s+(\S+)\s*$", re.M)


def anchors(page: Path) -> set[str]:
    """The anchors of a page's headings (repeated headings get -1, -2, ... as on GitHub), the
    headings of the files it includes (MyST's ``{include}``, as the site shows it) among them."""
    seen: dict[str, int] = {}
    out = set()
    text = page.read_text(encoding="utf-8")
    for m in _INCLUDE.finditer(text):
        text += "\n" + (page.parent / m.group(2)).read_text(encoding="utf-8")
    for _, line in _headings(text):
        slug = _slug(line)
        k = seen.get(slug, 0)
        seen[slug] = k + 1
        out.add(slug if k == 0 else f"{slug}-{k}")
    return out


def _headings(text: str) -> list[tuple[int, str]]:
    return [
        (n, h.group(1))
        for n, line in outside_code(text)
        if (h := re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line))
    ]


_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def links(page: Path) -> list[tuple[int, str]]:
    """(line, target) of the page's Markdown links outside code."""
    return [
        (n, m.group(1))
        for n, line in prose(page.read_text(encoding="utf-8"))
        for m in _LINK.finditer(line)
    ]


def dead_links(page: Path) -> list[str]:
    """The relative links of a page whose file, or whose anchor in that file, does not exist."""
    bad = []
    for n, target in links(page):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            bad.append(f"{_name(page)}:{n}: {target}: no such file {dest}")
        elif anchor and (dest.suffix != ".md" or anchor not in anchors(dest)):
            bad.append(f"{_name(page)}:{n}: {target}: no heading #{anchor} in {dest.name}")
    return bad


# ---- the documentation -----------------------------------------------------------------------

BLOCKS = [b for p in PAGES for b in fenced_blocks(p.read_text(encoding="utf-8"), p)]
PYTHON = [b for b in BLOCKS if b.lang in ("python", "py")]


def test_pages_found():
    assert (ROOT / "docs" / "index.md").exists()
    assert len(PAGES) > 2 and len(PYTHON) > 5, [p.name for p in PAGES]


@pytest.mark.parametrize("block", PYTHON, ids=[b.where for b in PYTHON])
def test_python_block_runs(block: Block, tmp_path: Path) -> None:
    missing = missing_packages(block.code)
    if missing:
        pytest.skip(f"{block.where} needs {', '.join(missing)}")
    error = run_block(block, tmp_path)
    assert error is None, error


@pytest.mark.parametrize("page", PAGES, ids=[_name(p) for p in PAGES])
def test_relative_links_resolve(page: Path) -> None:
    assert dead_links(page) == []


def test_every_docs_page_is_in_the_index():
    listed = {
        (ROOT / "docs" / t.partition("#")[0]).resolve() for _, t in links(ROOT / "docs/index.md")
    }
    pages = [p for p in PAGES[1:] if p.parent != ROOT / "docs" / "api"]  # listed by api/index.md
    unlisted = [_name(p) for p in pages if p.name != "index.md" and p.resolve() not in listed]
    assert unlisted == [], "docs/index.md does not list these pages"


def test_docs_build_command_is_the_one_ci_runs():
    """CONTRIBUTING.md's command that builds the site is the one .ci/run runs."""
    text = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    commands = [
        line.split("#")[0].strip()
        for b in fenced_blocks(text, ROOT / "CONTRIBUTING.md")
        for line in b.code.splitlines()
        if "sphinx" in line
    ]
    assert commands, "CONTRIBUTING.md gives no command that builds the documentation"
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert all(c in ci for c in commands), commands


def test_readme_starts_with_the_two_commands():
    """The first lines a new user sees are the two commands CI (.ci/run) runs."""
    blocks = fenced_blocks((ROOT / "README.md").read_text(encoding="utf-8"), ROOT / "README.md")
    first = blocks[0]
    assert first.line <= 3 and first.lang == "sh"
    commands = [line.split("#")[0].strip() for line in first.code.splitlines()]
    assert commands == [
        "pip install . && fastrnn demo",
        'pip install ".[test]" && python -m pytest',
    ]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert all(c in ci for c in commands)


# ---- the machinery fails when it should ---------------------------------------------------------


def _page(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def test_a_broken_block_fails_with_its_line(tmp_path: Path) -> None:
    text = "# T\n\n```python\nimport numpy as np\n\ny = np.ones(3) + x\n```\n"
    page = _page(tmp_path, "docs/page.md", text)
    (block,) = [b for b in fenced_blocks(text, page) if b.lang == "python"]
    assert block.line == 3
    error = run_block(block, tmp_path)
    assert error is not None
    assert "page.md:6:" in error and "NameError: name 'x' is not defined" in error


def test_a_warning_fails(tmp_path: Path) -> None:
    page = _page(tmp_path, "w.md", "```python\nimport warnings\nwarnings.warn('w')\n```\n")
    (block,) = fenced_blocks(page.read_text(), page)
    error = run_block(block, tmp_path)
    assert error is not None and "UserWarning: w" in error


def test_a_good_block_passes(tmp_path: Path) -> None:
    page = _page(tmp_path, "ok.md", "~~~python\nimport fastrnn\nprint(fastrnn.__version__)\n~~~\n")
    (block,) = fenced_blocks(page.read_text(), page)
    assert run_block(block, tmp_path) is None


def test_optional_imports_are_detected() -> None:
    code = "import fastrnn.torch as frt\nfrom onnxruntime import InferenceSession\n"
    names = {"torch", "onnxruntime"}
    missing = missing_packages(code)
    assert set(missing) <= names
    assert missing == sorted(n for n in names if importlib.util.find_spec(n) is None)
    assert missing_packages("import keras_not_a_dependency_name\nimport fastrnn\n") == []
    if importlib.util.find_spec("matplotlib") is None:
        assert missing_packages("import matplotlib.pyplot as plt\n") == ["matplotlib"]


def test_anchors_of_an_included_file_count(tmp_path: Path) -> None:
    _page(tmp_path, "C.md", "# C\n\n## How to add a cell\n")
    _page(tmp_path, "docs/c.md", "# C\n\n```{include} ../C.md\n:start-line: 2\n```\n")
    a = _page(tmp_path, "docs/a.md", "[ok](c.md#how-to-add-a-cell) [gone](c.md#how-not-to)\n")
    bad = dead_links(a)
    assert len(bad) == 1 and "no heading #how-not-to in c.md" in bad[0], bad


def test_dead_links_are_found(tmp_path: Path) -> None:
    _page(tmp_path, "docs/b.md", "# Speed and memory\n\n## Speed and memory\n\n## `x` (y)\n")
    a = _page(
        tmp_path,
        "docs/a.md",
        "# A\n\n[ok](b.md) [ok](b.md#speed-and-memory) [ok](b.md#speed-and-memory-1) "
        "[ok](b.md#x-y) [ok](#a) [web](https://example.org/none.md)\n"
        "[gone](c.md) [no anchor](b.md#speed) `[code](c.md)`\n\n```sh\n[block](c.md)\n```\n",
    )
    bad = dead_links(a)
    assert len(bad) == 2, bad
    assert "a.md:4: c.md: no such file" in bad[0]
    assert "a.md:4: b.md#speed: no heading #speed in b.md" in bad[1]
