"""The API reference's one rule: every public name of fastrnn is documented, once, and found.

* A *public module* is a module of the ``fastrnn`` package with no part of its dotted name
  starting with ``_``. Its *public names* are its ``__all__`` (or, without one, the names its own
  source defines at the top level that do not start with ``_``).
* Each public object is documented once, in its *home*: the module whose source defines it (or,
  for what a private module defines, the first public module that exports it). Every other module
  that exports it lists it with a link to that home.
* ``.. fastrnn-module:: fastrnn.x`` on a page (docs/api/) writes module ``fastrnn.x``'s
  reference: its docstring, a table of all its public names (each linked to where it is
  documented, with the first line of its docstring), then the description of each name it is the
  home of (autodoc: signature, arguments, returns, raises).
* Every public name is an entry of the reference under each of its names: ``fastrnn.LSTM`` (an
  index entry and a target on fastrnn's page, next to the table that links to the description)
  as well as ``fastrnn.layers.LSTM`` (the description).
* A name described without a docstring of its own (a constant: without a ``#:`` comment) is a
  warning where it is described; when the build ends, every public module must have had its
  directive and every public name a description and its entries. Warnings are errors (``-W``),
  so a module or name added to the package without its page or docstring fails the build.
* ``.. fastrnn-command-options::`` writes the options of the ``fastrnn`` command, as ``-h``
  prints them (docs/command.rst).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
import types
from functools import cache
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.errors import PycodeError
from sphinx.ext.autodoc.mock import mock
from sphinx.pycode import ModuleAnalyzer
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective
from sphinx.util.inspect import TypeAliasForwardRef

PACKAGE = "fastrnn"
logger = logging.getLogger(__name__)


def is_public(modname: str) -> bool:
    return not any(part.startswith("_") for part in modname.split("."))


@cache
def public_modules() -> tuple[str, ...]:
    """Every public module of the package, the package first, then in dotted-name order."""
    pkg = importlib.import_module(PACKAGE)
    found = [m.name for m in pkgutil.walk_packages(pkg.__path__, PACKAGE + ".")]
    return (PACKAGE, *sorted(m for m in found if is_public(m)))


@cache
def module(modname: str) -> types.ModuleType:
    return importlib.import_module(modname)


def _bound(node: ast.stmt) -> tuple[set[str], list[list[ast.stmt]]]:
    """The names a top-level statement binds, and the blocks (of ``if``/``try``) inside it."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}, []
    if isinstance(node, ast.Assign):
        return {n.id for t in node.targets for n in ast.walk(t) if isinstance(n, ast.Name)}, []
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return {node.target.id}, []
    if isinstance(node, ast.If):
        return set(), [node.body, node.orelse]
    if isinstance(node, ast.Try):
        return set(), [node.body, *(h.body for h in node.handlers), node.orelse]
    return set(), []


@cache
def own_names(modname: str) -> frozenset[str]:
    """The names a module's own source binds at the top level (defs, classes, assignments),
    inside top-level ``if``/``try`` blocks too; imported names are not its own."""
    path = getattr(module(modname), "__file__", None)
    if not path or not path.endswith(".py"):
        return frozenset()
    names: set[str] = set()
    blocks = [ast.parse(Path(path).read_text(encoding="utf-8")).body]
    while blocks:
        for node in blocks.pop():
            bound, inner = _bound(node)
            names |= bound
            blocks += inner
    return frozenset(names)


@cache
def public_names(modname: str) -> tuple[str, ...]:
    mod = module(modname)
    names = getattr(mod, "__all__", None)
    if names is None:
        names = sorted(n for n in own_names(modname) if not n.startswith("_"))
    return tuple(names)


def _exports(modname: str, name: str, obj: Any) -> bool:
    return name in public_names(modname) and getattr(module(modname), name, None) is obj


@cache
def home(modname: str, name: str) -> str:
    """The public module whose page describes ``modname.name`` (a submodule: its own name)."""
    obj = getattr(module(modname), name)
    if isinstance(obj, types.ModuleType):
        return obj.__name__
    if name in own_names(modname):
        return modname
    origin = getattr(obj, "__module__", None)
    if (
        (inspect.isclass(obj) or inspect.isfunction(obj))
        and isinstance(origin, str)
        and origin in public_modules()
        and _exports(origin, name, obj)
    ):
        return origin
    # defined by a public module that exports it under the same name
    for m in public_modules():
        if name in own_names(m) and _exports(m, name, obj):
            return m
    # defined in a private module: described by the first public module that exports it
    for m in public_modules():
        if _exports(m, name, obj):
            return m
    return modname


def target(modname: str, name: str) -> str:
    obj = getattr(module(modname), name)
    if isinstance(obj, types.ModuleType):
        return obj.__name__
    return f"{home(modname, name)}.{name}"


def summary(modname: str, name: str) -> str:
    """The first paragraph of a public name's docstring, joined into one line (data: of its
    ``#:`` comment, read from its home module's source)."""
    obj = getattr(module(modname), name)
    if inspect.isclass(obj) or callable(obj) or isinstance(obj, types.ModuleType):
        doc = inspect.getdoc(obj) or ""
    else:
        doc = "\n".join(_attr_docs(home(modname, name)).get(("", name), []))
    first = doc.strip().split("\n\n", 1)[0]
    return " ".join(first.split())


def _attr_docs(modname: str) -> dict[tuple[str, str], list[str]]:
    """The ``#:`` comments (and docstrings below assignments) of a module's source."""
    try:
        return dict(ModuleAnalyzer.for_module(modname).find_attr_docs())
    except PycodeError:  # no source: nothing to read the comments from
        return {}


def undocumented(modname: str, name: str) -> bool:
    """Whether a name the module is the home of lacks its own documentation: a docstring for a
    class or function, a ``#:`` comment (or a string right below) for data."""
    obj = getattr(module(modname), name)
    if inspect.isclass(obj) or callable(obj):
        doc = (obj.__doc__ if inspect.isclass(obj) else inspect.getdoc(obj)) or ""
        # a NamedTuple's or dataclass's own __doc__ is its signature, "Name(a, b)": no docstring
        return not doc.strip() or doc.startswith(f"{getattr(obj, '__name__', name)}(")
    docs = _attr_docs(modname)
    return not any(line.strip() for line in docs.get(("", name), []))


def shown_bases(obj: type) -> list[Any]:
    """The bases a class's description names: not ``object``, not a private mixin."""
    bases = list(getattr(obj, "__orig_bases__", None) or obj.__bases__)
    return [b for b in bases if b is not object and not _private_class(b)]


def _private_class(b: Any) -> bool:
    """A class no page describes: a private name, or defined in a private module (the training
    kit's ``_parts.Composite``)."""
    name = getattr(b, "__name__", "")
    return name.startswith("_") or not is_public(getattr(b, "__module__", "") or "_")


def _inherited(cls: type) -> list[str]:
    """The members a class's description shows of those it inherits: the ones of its private
    bases (no page describes them: ``SequenceModel.state_dict`` comes from a private mixin), not
    those of its public bases (each described on its own page)."""
    bases = cls.__mro__[1:]
    private = [b for b in bases if _private_class(b)]
    if not private:
        return []
    public = sorted({b.__name__ for b in bases if b not in private})
    return [f"   :inherited-members: {', '.join(public)}"]


def _own_call(cls: type) -> bool:
    """Whether a class defines ``__call__`` as a method of its own (not ``__call__ = forward``,
    which the description of ``forward`` covers)."""
    call = vars(cls).get("__call__")
    return call is not None and not any(
        v is call for k, v in vars(cls).items() if k != "__call__" and not k.startswith("_")
    )


def _alias_name(self: Any) -> str:
    """An alias of ``autodoc_type_aliases`` met inside another type (``dict[str, Array]``,
    ``ArrayLike | None``, a property's type) written as its name: Sphinx 9 writes the repr of its
    placeholder there, ``TypeAliasForwardRef('numpy.ndarray')``."""
    return str(self.name)


def _bases(app: Sphinx, name: str, obj: Any, options: Any, bases: list[Any]) -> None:
    if name.startswith(PACKAGE + "."):
        bases[:] = shown_bases(obj)


def _auto_directive(obj: Any) -> str:
    if inspect.isclass(obj):
        return "autoexception" if issubclass(obj, BaseException) else "autoclass"
    if callable(obj):
        return "autofunction"
    return "autodata"


def _kind(obj: Any) -> str:
    """The Python domain's object type of a public object."""
    return _auto_directive(obj).removeprefix("auto")


def _aliases(modname: str) -> list[str]:
    """A target (index entry and anchor, no text) ``modname.name`` for each name the module
    re-exports, so that ``fastrnn.LSTM`` is found (search, index, links) as well as its home
    ``fastrnn.layers.LSTM``; the names table right below links to the description."""
    out = []
    for name in public_names(modname):
        obj = getattr(module(modname), name)
        if isinstance(obj, types.ModuleType):
            if obj.__name__ != f"{modname}.{name}":  # fastrnn.optim is fastrnn.training.optim
                out += [f".. py:module:: {modname}.{name}", ""]
        elif home(modname, name) != modname:
            out += [f".. py:{_kind(obj)}:: {name}", f"   :module: {modname}", "   :no-typesetting:"]
            out.append("")
    return [*out, f".. py:currentmodule:: {modname}", ""] if out else []


_LITERAL = re.compile(r"(``.+?``|`[^`]+`)")


def _cell_text(text: str) -> str:
    """A docstring's first paragraph (reStructuredText, as autodoc reads it) as the text of a table
    cell: what would read as structure only there (a leading list marker; ``|x|`` outside
    literals, a substitution) kept as text."""
    parts = _LITERAL.split(text)
    text = "".join(p if i % 2 else re.sub(r"(?<!\\)\|", r"\\|", p) for i, p in enumerate(parts))
    return "\\ " + text if re.match(r"([-*+]|\d+[.)]|#\.)\s", text) else text


def _table(modname: str) -> list[str]:
    names = public_names(modname)
    if not names:
        return []
    lines = ["", ".. list-table::", "   :header-rows: 1", "   :widths: 30 70", "",
             "   * - name", "     - what"]  # fmt: skip
    for name in names:
        obj = getattr(module(modname), name)
        role = "mod" if isinstance(obj, types.ModuleType) else "obj"
        text = _cell_text(summary(modname, name))
        link = f":py:{role}:`{name} <{target(modname, name)}>`"
        lines += [f"   * - {link}", f"     - {text}".rstrip()]
    return lines


def _description(modname: str, name: str, obj: Any) -> list[str]:
    """The autodoc directive that describes a name in its home module."""
    rst = [f".. {_auto_directive(obj)}:: {modname}.{name}"]
    if _auto_directive(obj) == "autodata" and "<" in repr(obj):
        rst.append("   :no-value:")  # a value with no readable repr (<function ...>)
    if inspect.isclass(obj):
        rst += ["   :members:", *_inherited(obj)]
        if shown_bases(obj):
            rst.append("   :show-inheritance:")
        if _own_call(obj):
            rst.append("   :special-members: __call__")
    return [*rst, ""]


class FastrnnModule(SphinxDirective):
    """``{fastrnn-module} fastrnn.x``: module fastrnn.x's whole reference (see the module doc)."""

    required_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        modname = self.arguments[0]
        with mock(self.config.autodoc_mock_imports):
            if modname not in public_modules():
                raise self.error(f"{modname} is not a public module of {PACKAGE}")
            rst = [f".. automodule:: {modname}", "   :no-members:", ""]
            rst += _aliases(modname) + _table(modname) + [""]
            for name in public_names(modname):
                obj = getattr(module(modname), name)
                if isinstance(obj, types.ModuleType) or home(modname, name) != modname:
                    continue
                if undocumented(modname, name):
                    logger.warning("%s.%s has no docstring (data: no '#:' comment)", modname,
                                   name, location=self.get_location(), type="fastrnn",
                                   subtype="api")  # fmt: skip
                rst += _description(modname, name, obj)
        # rebuild the page when a module it reads changes (its own, and those of the names it
        # lists: the summaries come from their homes)
        for m in {modname, *(home(modname, n) for n in public_names(modname))}:
            self._depend_on(m)
        env = self.env
        store = _store(env)
        if modname in store and store[modname] != env.docname:
            logger.warning("%s has a reference in %s and %s", modname, store[modname],
                           env.docname, location=self.get_location())  # fmt: skip
        store[modname] = env.docname
        return self.parse_text_to_nodes("\n".join(rst))  # type: ignore[no-any-return]

    def _depend_on(self, modname: str) -> None:
        path = getattr(module(modname), "__file__", None)
        if path:
            self.env.note_dependency(path)


class CommandOptions(SphinxDirective):
    """``.. fastrnn-command-options::``: the options of ``fastrnn`` and of each subcommand, as
    their ``-h`` prints them (:func:`fastrnn.tools.cli.options_reference`)."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        cli = importlib.import_module(f"{PACKAGE}.tools.cli")
        # the parsers are written in the tools' modules: rebuild when one changes
        for path in sorted(Path(cli.__file__).parent.glob("*.py")):
            self.env.note_dependency(str(path))
        return self.parse_text_to_nodes(cli.options_reference())  # type: ignore[no-any-return]


def _store(env: Any) -> dict[str, str]:
    return env.__dict__.setdefault("fastrnn_api_modules", {})  # type: ignore[no-any-return]


def purge(app: Sphinx, env: Any, docname: str) -> None:
    store = _store(env)
    for m in [m for m, d in store.items() if d == docname]:
        del store[m]


def merge(app: Sphinx, env: Any, docnames: set[str], other: Any) -> None:
    _store(env).update({m: d for m, d in _store(other).items() if d in docnames})


def missing(documented: set[str], objects: set[str]) -> list[str]:
    """What the reference lacks: public modules without a page, public names without their
    description or entry (``objects``: the full names of the Python objects described)."""
    out = [f"the public module {m} has no reference page (a page with '.. fastrnn-module:: {m}')"
           for m in public_modules() if m not in documented]  # fmt: skip
    for m in public_modules():
        for name in public_names(m):
            t = target(m, name)
            if t not in objects:
                out.append(f"the public name {m}.{name} is not described in the reference ({t})")
            elif f"{m}.{name}" not in objects:
                out.append(f"the public name {m}.{name} has no entry in the reference")
    return out


def check(app: Sphinx, env: Any) -> None:
    if app.builder.format != "html":
        return
    objects = {o[0] for o in env.domains["py"].get_objects()}
    with mock(app.config.autodoc_mock_imports):
        for problem in missing(set(_store(env)), objects):
            logger.warning(problem, type="fastrnn", subtype="api")


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("fastrnn-module", FastrnnModule)
    app.add_directive("fastrnn-command-options", CommandOptions)
    app.connect("env-purge-doc", purge)
    app.connect("env-merge-info", merge)
    app.connect("env-check-consistency", check)
    app.connect("autodoc-process-bases", _bases)
    TypeAliasForwardRef.__repr__ = _alias_name  # type: ignore[method-assign]
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
