"""What the parsers of fastrnn's commands share (``fastrnn``, ``fastrnn bench``, ``fastrnn
selfcheck``): options never abbreviated, every default shown in the help, and the checks of
paths and thread counts that run before any work."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable
from typing import Any

__all__ = [
    "HelpFormatter",
    "check_input_file",
    "check_output_path",
    "check_threads",
    "parser",
    "subparser",
    "usable_cores",
]


def _shown(value: Any) -> str:
    """A default as it would be typed: lists space-separated, strings quoted when they are empty
    or hold spaces."""
    if isinstance(value, (list, tuple)):
        return " ".join(_shown(v) for v in value)
    if isinstance(value, str) and (not value or value != value.strip() or " " in value):
        return repr(value)
    return str(value)


class HelpFormatter(argparse.HelpFormatter):
    """Appends ``(default: ...)`` to each option's help, unless the help already says it: flags
    show ``off``, options without a value (default None) must say what their absence means."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default is argparse.SUPPRESS or "(default" in text:
            return text
        if isinstance(action, argparse.BooleanOptionalAction):  # --x / --no-x
            return f"{text} (default: {'on' if action.default else 'off'})"
        if action.nargs == 0:  # a flag: not given
            return f"{text} (default: off)"
        if action.default is None:
            return text
        return f"{text} (default: {_shown(action.default).replace('%', '%%')})"


def parser(prog: str, description: str | None = None) -> argparse.ArgumentParser:
    """An ArgumentParser that never abbreviates options (``--t`` is not ``--threads``) and shows
    every default."""
    return argparse.ArgumentParser(
        prog=prog, description=description, allow_abbrev=False, formatter_class=HelpFormatter
    )


def subparser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help: str, **kw: Any
) -> argparse.ArgumentParser:
    """A sub-command's parser with the same rules (argparse does not pass ``allow_abbrev`` on to
    sub-parsers by itself)."""
    return sub.add_parser(
        name,
        help=help,
        description=kw.pop("description", help),
        allow_abbrev=False,
        formatter_class=HelpFormatter,
        **kw,
    )


def usable_cores() -> int:
    """The CPUs this process may use (its affinity mask and cgroup CPU quota, as fastrnn's
    default thread count counts them)."""
    from .. import functional

    return functional.available_cpus()


def check_threads(ap: argparse.ArgumentParser, values: Iterable[int] | int | None) -> None:
    """``--threads``: each value >= 1 (else a usage error); one warning line on stderr for a
    value above the usable cores, where the threads would wait for each other."""
    if values is None:
        return
    values = [values] if isinstance(values, int) else list(values)
    if any(n < 1 for n in values):
        ap.error(f"--threads: must be >= 1, got {min(values)}")
    cores = usable_cores()
    if max(values) > cores:
        print(
            f"{ap.prog}: warning: --threads {max(values)} is more than the {cores} core(s) this "
            "process can use: the threads will take turns (slower, same results)",
            file=sys.stderr,
        )


def check_input_file(ap: argparse.ArgumentParser, option: str, path: str | None) -> None:
    """A file to read: it must exist, be a file, be readable and not be empty (else a one-line
    usage error, exit status 2, before any work)."""
    if path is None:
        return
    if not os.path.exists(path):
        ap.error(f"{option}: no such file: {path!r}")
    if not os.path.isfile(path):
        ap.error(f"{option}: not a file: {path!r}")
    if not os.access(path, os.R_OK):
        ap.error(f"{option}: cannot read {path!r} (permission denied)")
    if os.path.getsize(path) == 0:
        ap.error(f"{option}: {path!r} is empty")


def check_output_path(ap: argparse.ArgumentParser, option: str, path: str | None) -> None:
    """A file to write at the end of a run: its folder must exist and be writable, and the path
    must not be a folder, so that the run does not fail after the work (a usage error, exit
    status 2, before any work). None or '' (nothing to write) passes."""
    if not path:
        return
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        ap.error(f"{option}: the folder {os.path.dirname(path)!r} does not exist")
    if os.path.isdir(path):
        ap.error(f"{option}: {path!r} is a folder, expected a file name")
    if not os.access(folder, os.W_OK):
        ap.error(f"{option}: cannot write into {os.path.dirname(path) or '.'!r}")


def check_precision_mode(
    ap: argparse.ArgumentParser,
    args: argparse.Namespace,
    mode: str,
    peers: Iterable[str],
    peers_text: str,
) -> None:
    """The bench options that do not apply to the tables of ``--compute-dtype mode`` (under
    load, a plot, ``--isa``), and ``--peers`` naming none of the mode's peers: a usage error."""
    for flag, given in (("--under-load", args.under_load), ("--png", args.png)):
        if given:
            ap.error(f"{flag}: not with --compute-dtype {mode}")
    if args.isa:
        ap.error(f"--isa: not with --compute-dtype {mode} (set FASTRNN_ISA in the environment "
                 "to time fastrnn under another kernel variant)")  # fmt: skip
    if not [p for p in peers if p in args.peers]:
        ap.error(f"--peers: the {mode} tables time {peers_text}; name at least one")
