"""Sphinx configuration of fastrnn's documentation site: how to build it, and what the build
checks, is CONTRIBUTING.md's "Documentation"."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

import fastrnn  # noqa: E402  (the installed package: the pages document what pip installed)

project = "fastrnn"
author = "the fastrnn developers"
copyright = "2026, the fastrnn developers"
release = fastrnn.__version__
version = release

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinx_copybutton",
    "fastrnn_api",
]

source_suffix = {".md": "myst-nb", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "_ext", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]

# MyST: GitHub's heading anchors, so that a link such as layers.md#variable-lengths works on
# GitHub and on the site alike
myst_heading_anchors = 6
myst_enable_extensions = ["dollarmath", "colon_fence", "deflist", "substitution"]

# the tutorials run on every build; a failing cell fails the build
nb_execution_mode = "force"
nb_execution_raise_on_error = True
nb_execution_timeout = 180  # seconds a cell may take (each tutorial is about a minute in all)
nb_execution_show_tb = True
nb_merge_streams = True
# the examples are not timings: one kernel thread unless a page says otherwise (docs/threads.md)
os.environ.setdefault("OMP_NUM_THREADS", "1")
# the tutorials' figures: matplotlib's inline backend, which hands each figure to the notebook
# as a PNG (Agg, or a backend set in the caller's environment, would show none)
os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
# the kernel that runs them is this environment's Python (a user-level "python3" kernel of some
# other Python would run another fastrnn, or none)
os.environ.setdefault("JUPYTER_PREFER_ENV_PATH", "1")
# matplotlib's font cache made here, once, so that its "building the font cache" message on a
# fresh machine does not land in the first tutorial's output
import matplotlib.font_manager  # noqa: E402, F401

# the API reference: docstrings in Google style (Args, Returns, Raises)
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
autodoc_class_signature = "mixed"
# the annotations as written (the modules use `from __future__ import annotations`), not NumPy's
# expansion of its aliases into a screenful of private protocols
autodoc_type_aliases = {
    "ArrayLike": "numpy.typing.ArrayLike",
    "DTypeLike": "numpy.typing.DTypeLike",
    "NDArray": "numpy.typing.NDArray",
    "Array": "numpy.ndarray",
    "FloatArray": "numpy.ndarray",
    "IntArray": "numpy.ndarray",
}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_use_param = True
napoleon_use_ivar = True
# optional peers: documented from the source even where they are not installed
OPTIONAL = ("torch", "onnx", "onnxruntime")
autodoc_mock_imports = [m for m in OPTIONAL if importlib.util.find_spec(m) is None]

html_theme = "furo"
html_title = f"fastrnn {release}"
html_static_path: list[str] = []
html_last_updated_fmt = None
html_show_sourcelink = False
html_theme_options = {"navigation_with_keys": True}
pygments_style = "sphinx"
pygments_dark_style = "monokai"
