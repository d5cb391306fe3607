"""The API reference's rule (docs/_ext/fastrnn_api.py), checked without building the site.

The Sphinx build (.ci/run) fails when a public module has no page or a public name no
description; these tests state the same rule on the sources alone, and check that the rule itself
finds what is missing.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

pytest.importorskip("sphinx", reason="the docs extension needs Sphinx (pip install '.[docs]')")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs" / "_ext"))
import fastrnn_api as api  # noqa: E402

API = ROOT / "docs" / "api"
_DIRECTIVE = re.compile(r"^\.\. fastrnn-module:: (\S+)\s*$", re.M)


def pages() -> dict[str, str]:
    """module -> the page (file name) whose directive writes its reference."""
    out: dict[str, str] = {}
    for page in sorted(API.glob("*.rst")):
        for m in _DIRECTIVE.findall(page.read_text(encoding="utf-8")):
            assert m not in out, f"{m} has a reference in {out[m]} and {page.name}"
            out[m] = page.name
    return out


def all_entries() -> set[str]:
    """What a complete build describes: each name's description and each of its names."""
    names = [(m, n) for m in api.public_modules() for n in api.public_names(m)]
    return {api.target(m, n) for m, n in names} | {f"{m}.{n}" for m, n in names}


def test_every_public_module_has_one_page_listed_in_the_index():
    have = pages()
    assert sorted(set(api.public_modules()) - set(have)) == []
    assert sorted(set(have) - set(api.public_modules())) == []
    index = (API / "index.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^(fastrnn[\w.]*)$", index, re.M))
    assert {p.removesuffix(".rst") for p in have.values()} == listed


def test_the_public_modules_are_found():
    mods = api.public_modules()
    assert mods[0] == "fastrnn"
    for m in (
        "fastrnn.layers",
        "fastrnn.functional",
        "fastrnn.training.seq2seq",
        "fastrnn.tools.cli",
    ):
        assert m in mods
    assert not [m for m in mods if "._" in m]


@pytest.mark.parametrize(
    ("module", "name", "home"),
    [
        ("fastrnn", "LSTM", "fastrnn.layers"),  # a class: where it is defined
        ("fastrnn", "Seq2Seq", "fastrnn.training.seq2seq"),
        ("fastrnn.training", "Seq2Seq", "fastrnn.training.seq2seq"),
        ("fastrnn.functional", "StackSpec", "fastrnn.spec"),
        ("fastrnn", "quantize_dynamic", "fastrnn.quantized"),
        ("fastrnn", "__version__", "fastrnn"),  # from the private _core: its first public exporter
        ("fastrnn.layers", "LSTM", "fastrnn.layers"),
    ],
)
def test_each_name_is_described_once_in_its_home(module: str, name: str, home: str) -> None:
    assert api.home(module, name) == home
    assert api.target(module, name) == f"{home}.{name}"


def test_a_submodule_links_to_its_own_page():
    assert api.target("fastrnn", "functional") == "fastrnn.functional"
    assert api.target("fastrnn.training", "optim") == "fastrnn.training.optim"


def test_every_public_name_has_its_docstring():
    """A class or function without a docstring, a constant without a ``#:`` comment."""
    lacking = [
        f"{m}.{n}"
        for m in api.public_modules()
        for n in api.public_names(m)
        if api.home(m, n) == m and api.undocumented(m, n)
    ]
    assert lacking == []


def test_what_is_missing_is_found():
    entries = all_entries()
    documented = set(api.public_modules())
    assert api.missing(documented, entries) == []
    lost = api.target("fastrnn", "LSTM")
    problems = api.missing(documented - {"fastrnn.onnx"}, entries - {lost, "fastrnn.GRU"})
    assert any("fastrnn.onnx has no reference page" in p for p in problems)
    assert any(f"fastrnn.LSTM is not described in the reference ({lost})" in p for p in problems)
    assert any("fastrnn.layers.LSTM is not described" in p for p in problems)
    assert any("fastrnn.GRU has no entry in the reference" in p for p in problems)
    assert len(problems) == 4, problems


def test_undocumented_is_found():
    # real objects of the package, with and without their documentation
    assert not api.undocumented("fastrnn.layers", "LSTM")
    assert api.undocumented("fastrnn.reference", "_GATES") is True  # a constant with no '#:'


def test_a_namedtuple_without_a_docstring_is_undocumented(monkeypatch: pytest.MonkeyPatch) -> None:
    from typing import NamedTuple

    class Bare(NamedTuple):
        a: int

    mod = api.module("fastrnn.layers")
    monkeypatch.setattr(mod, "Bare", Bare, raising=False)
    assert api.undocumented("fastrnn.layers", "Bare")


def test_table_cells_keep_docstring_text_as_text() -> None:
    assert api._cell_text("- a list") == "\\ - a list"
    assert api._cell_text("2. steps") == "\\ 2. steps"
    assert api._cell_text("the norm |x| of ``|y|``") == "the norm \\|x\\| of ``|y|``"
    assert api._cell_text(":class:`X` as is") == ":class:`X` as is"


def test_aliases_nested_in_types_are_written_by_name() -> None:
    """Sphinx 9 writes an ``autodoc_type_aliases`` alias inside another type as the repr of its
    placeholder; the extension makes that repr the alias's name (a Sphinx internal: pinned)."""
    from sphinx.util.inspect import TypeAliasForwardRef

    assert api._alias_name(TypeAliasForwardRef("numpy.ndarray")) == "numpy.ndarray"
