"""The ``fastrnn`` command: its subcommands run end to end with tiny settings and exit 0; every
option has help and shows its default, none is abbreviated, bad arguments stop it before any
work with a one-line error."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastrnn
from fastrnn.tools import _options, cli, selfcheck
from fastrnn.training import text


def run(*args: str, cwd: Path) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "fastrnn", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_demo_tiny(tmp_path: Path) -> None:
    txt = tmp_path / "t.txt"
    txt.write_text("the quick brown fox jumps over the lazy dog. " * 200)
    out = run("demo", "--text", str(txt), "--steps", "3", "--hidden", "16", "--batch", "4",
              "--seq-len", "8", "--sample-len", "20", "--save", str(tmp_path / "m.npz"),
              cwd=tmp_path)  # fmt: skip
    assert "characters/s" in out and "temperature 0.2" in out and "held-out" in out
    assert (tmp_path / "m.npz").exists()


def test_demo_and_adding_quantized(tmp_path: Path) -> None:
    """--quantize int8: the int8 model's held-out loss next to the float model's, its samples;
    the adding problem's int8 test MSE next to each float one."""
    txt = tmp_path / "t.txt"
    txt.write_text("the quick brown fox jumps over the lazy dog. " * 200)
    out = run("demo", "--text", str(txt), "--steps", "3", "--hidden", "16", "--batch", "4",
              "--seq-len", "8", "--sample-len", "20", "--quantize", "int8",
              cwd=tmp_path)  # fmt: skip
    line = next(ln for ln in out.splitlines() if ln.startswith("int8 model"))
    float_loss = float(re.findall(r"held-out ([\d.]+) nats/char;", out)[0])
    q_loss, f_loss = map(float, re.findall(r"held-out ([\d.]+) nats/char, float ([\d.]+)", line)[0])
    assert f_loss == pytest.approx(float_loss, abs=1e-3) and q_loss == pytest.approx(f_loss, 0.01)
    assert "--- sample, temperature 0.2 (int8 model) ---" in out
    out = run("adding", "--T", "10", "--steps", "4", "--hidden", "4", "--batch", "8",
              "--cells", "gru", "--quantize", "int8", "--plot", "", cwd=tmp_path)  # fmt: skip
    row = next(ln for ln in out.splitlines() if ln.startswith("gru")).split()
    assert "int8 test MSE" in out and float(row[-1]) == pytest.approx(float(row[1]), abs=0.01)


def test_demo_builtin_corpus(tmp_path: Path) -> None:
    out = run("demo", "--steps", "2", "--hidden", "8", "--batch", "2", "--seq-len", "8",
              "--sample-len", "5", "--max-chars", "20000", cwd=tmp_path)  # fmt: skip
    assert "standard library" in out


def test_adding_and_gradflow_tiny(tmp_path: Path) -> None:
    out = run("adding", "--T", "10", "--steps", "4", "--hidden", "4", "--batch", "8",
              "--plot", "", cwd=tmp_path)  # fmt: skip
    for cell in ("rnn", "gru", "lstm", "const"):
        assert cell in out
    out = run("gradflow", "--T", "6", "--hidden", "4", "--batch", "2", "--plot", "",
              cwd=tmp_path)  # fmt: skip
    assert "||dL/dh_t||" in out and "lstm" in out
    out = run("gradflow", "--T", "6", "--hidden", "4", "--batch", "2", "--plot", "",
              "--init", "orthogonal", "--scale", "3", cwd=tmp_path)  # fmt: skip
    assert "orthogonal" in out and "x 3.0" in out


def test_plot_written_or_explained(tmp_path: Path) -> None:
    out = run("gradflow", "--T", "5", "--hidden", "3", "--batch", "2", "--plot", "g.png",
              cwd=tmp_path)  # fmt: skip
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "install matplotlib" in out
    else:
        assert (tmp_path / "g.png").stat().st_size > 1000


def test_help_and_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 0
    assert "demo" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["demo", "--steps", "0"])
    with pytest.raises(SystemExit):
        cli.main(["adding", "--T", "1"])


def test_progress_lines() -> None:
    import io

    s = io.StringIO()
    p = cli.Progress(20, "x", stream=s)
    for _ in range(20):
        p.update(1, loss=1.0)
    lines = s.getvalue().splitlines()
    assert 10 <= len(lines) <= 12 and lines[-1].startswith("x [####################] 20/20")


# ---------------------------------------------------------------- what a new user runs into


def _subparsers(ap: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (sub,) = [a for a in ap._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def _all_parsers() -> dict[str, argparse.ArgumentParser]:
    """Every parser a user meets: fastrnn, its subcommands, fastrnn bench, fastrnn selfcheck."""
    parsers = cli._parsers()
    assert list(parsers) == ["fastrnn", *(f"fastrnn {c}" for c in _subparsers(cli._parser()))]
    assert parsers["fastrnn bench"].prog == "fastrnn bench"  # bench's own parser, not the stub
    return parsers


def test_the_reference_lists_every_option_of_every_command() -> None:
    """The site's page of the command (docs/command.rst, from cli.options_reference) holds each
    command's ``-h``, as the parsers make it: every option of every subcommand is findable."""
    doc = cli.options_reference()
    for prog, ap in _all_parsers().items():
        assert f"``{prog}``::" in doc, prog
        for action in ap._actions:
            if action.help == argparse.SUPPRESS:  # an internal option (bench's --worker)
                continue
            for option in action.option_strings:
                assert re.search(rf"\s{re.escape(option)}\b", doc), f"{prog} {option}"


def test_the_command_page_shows_the_reference() -> None:
    page = (Path(__file__).resolve().parents[1] / "docs" / "command.rst").read_text()
    assert ".. fastrnn-command-options::" in page


def _option_help(ap: argparse.ArgumentParser) -> dict[str, str]:
    """Each option's line(s) of ``--help``, by its first option string."""
    blocks: dict[str, str] = {}
    key = None
    for line in ap.format_help().splitlines():
        m = re.match(r"^  (-[-\w]+)", line)
        if m:
            key = m.group(1)
            blocks[key] = line
        elif key is not None and line.startswith("    "):
            blocks[key] += " " + line.strip()
        else:
            key = None
    return blocks


@pytest.mark.parametrize("name", list(_all_parsers()))
def test_every_option_has_help_and_shows_its_default(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    ap = _all_parsers()[name]
    blocks = _option_help(ap)
    options = [a for a in ap._actions if a.option_strings and a.help is not argparse.SUPPRESS]
    assert options
    for action in options:
        first = action.option_strings[0]
        if first in ("-h", "--version"):
            continue
        assert action.help, f"{name} {first}: no help text"
        assert "(default" in blocks[first], f"{name} {first}: no default shown: {blocks[first]}"


def test_yes_no_options_show_their_default_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--x / --no-x`` options say on or off as their default is; plain flags say off."""
    monkeypatch.setenv("COLUMNS", "200")
    blocks = _option_help(_all_parsers()["fastrnn seq2seq"])
    assert "(default: on)" in blocks["--bidirectional"] and "(default: on)" in blocks["--compare"]
    ap = _options.parser("x")
    ap.add_argument("--flag", action="store_true", help="a flag")
    ap.add_argument("--yes", action=argparse.BooleanOptionalAction, default=False, help="y")
    assert "a flag (default: off)" in ap.format_help()
    assert "y (default: off)" in ap.format_help()


def test_defaults_shown_as_typed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    demo = _option_help(_subparsers(cli._parser())["demo"])
    assert "(default: 192)" in demo["--hidden"]
    assert "(default: 0.2 0.6 1.0)" in demo["--temperatures"]
    assert "(default: lstm)" in demo["--cell"]
    assert "(default: the built-in corpus" in demo["--text"]
    assert "(default: off)" in _option_help(selfcheck._parser("x"))["--no-timing"]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0
    out = capsys.readouterr().out.strip()
    assert out == f"fastrnn {fastrnn.__version__} (kernel variant {fastrnn.build_info()['isa']})"


def test_version_from_the_command_line(tmp_path: Path) -> None:
    assert run("--version", cwd=tmp_path).startswith(f"fastrnn {fastrnn.__version__} ")
    # the module the console script points at runs as a script too
    out = subprocess.run(
        [sys.executable, "-m", "fastrnn.tools.cli", "--version"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert out.stdout.startswith(f"fastrnn {fastrnn.__version__} ")


@pytest.mark.parametrize(
    ("parser", "argv"),
    [
        ("fastrnn", ["adding", "--t", "50"]),  # was --threads 50
        ("fastrnn", ["demo", "--hid", "8"]),
        ("fastrnn", ["gradflow", "--sc", "3"]),
        ("fastrnn bench", ["--thr", "1"]),
        ("fastrnn selfcheck", ["--rep", "2"]),
    ],
)
def test_options_are_never_abbreviated(
    parser: str, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as e:
        _all_parsers()[parser].parse_args(argv)
    assert e.value.code == 2
    assert f"unrecognized arguments: {argv[-2]}" in capsys.readouterr().err


def _usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The one-line error of ``fastrnn argv`` (exit status 2), with nothing run before it."""
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert "Traceback" not in err and lines[-1].startswith(f"fastrnn {argv[0]}: error: ")
    return lines[-1]


def test_paths_checked_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = str(tmp_path / "missing.txt")
    assert "--text: no such file" in _usage_error(["demo", "--text", missing], capsys)
    assert "--text: not a file" in _usage_error(["demo", "--text", str(tmp_path)], capsys)
    (tmp_path / "empty.txt").write_text("")
    assert "is empty" in _usage_error(["demo", "--text", str(tmp_path / "empty.txt")], capsys)
    nowhere = str(tmp_path / "no" / "folder")
    err = _usage_error(["demo", "--save", nowhere + "/m.npz", "--steps", "1"], capsys)
    assert "--save: the folder" in err and "does not exist" in err
    tiny = ["--T", "4", "--steps", "1", "--hidden", "2", "--batch", "2"]
    assert "--plot: the folder" in _usage_error(["adding", *tiny, "--plot", nowhere + "/a.png"],
                                                capsys)  # fmt: skip
    assert "--plot: the folder" in _usage_error(["gradflow", *tiny[:2], "--plot", nowhere + "/g"],
                                                capsys)  # fmt: skip
    assert "is a folder" in _usage_error(["gradflow", "--plot", str(tmp_path)], capsys)


def test_bench_paths_and_counts_checked_before_timing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the smallest run, should the checks not stop it
    small = ["--shapes", "S5", "--cells", "rnn", "--threads", "1", "--peers", "fastrnn",
             "--repeat", "1", "--budget", "0.01", "--memory-shapes"]  # fmt: skip
    for extra, msg in [
        (["--json", str(tmp_path / "no" / "b.json")], "--json: the folder"),
        (["--png", str(tmp_path / "no" / "b.png")], "--png: the folder"),
        (["--repeat", "0"], "--repeat: must be >= 1"),
        (["--threads", "0"], "--threads: must be >= 1"),
    ]:
        with pytest.raises(SystemExit) as e:
            cli.main(["bench", *small, *extra])
        assert e.value.code == 2
        out, err = capsys.readouterr()
        assert out == "" and f"fastrnn bench: error: {msg}" in err


def test_bad_counts_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert "--threads: must be >= 1" in _usage_error(["gradflow", "--threads", "0"], capsys)
    assert "--lr: must be > 0" in _usage_error(["demo", "--lr", "0"], capsys)
    assert "--temperatures: must be >= 0" in _usage_error(
        ["demo", "--temperatures", "1", "-0.5"], capsys
    )
    with pytest.raises(SystemExit) as e:
        selfcheck.main(["--shape", "4", "0", "8", "8"])
    assert e.value.code == 2
    assert "--shape: every size must be >= 1" in capsys.readouterr().err


def test_warning_when_threads_exceed_the_cores(capsys: pytest.CaptureFixture[str]) -> None:
    cores = _options.usable_cores()
    tiny = ["gradflow", "--T", "4", "--hidden", "2", "--batch", "2", "--plot", ""]
    try:
        assert cli.main([*tiny, "--threads", str(cores + 1)]) == 0
        err = capsys.readouterr().err
        warnings = [line for line in err.splitlines() if "warning" in line]
        assert warnings == [
            f"fastrnn gradflow: warning: --threads {cores + 1} is more than the {cores} core(s) "
            "this process can use: the threads will take turns (slower, same results)"
        ]
        assert cli.main([*tiny, "--threads", str(cores)]) == 0
        assert "warning" not in capsys.readouterr().err
    finally:
        fastrnn.set_num_threads(cores)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs sched_setaffinity")
def test_usable_cores_follow_the_affinity() -> None:
    """The --threads warning counts the CPUs as the default thread count does (one contract):
    in a process allowed one CPU, 1."""
    code = "from fastrnn.tools import _options; print(_options.usable_cores())"
    cpu = min(os.sched_getaffinity(0))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       preexec_fn=lambda: os.sched_setaffinity(0, {cpu}))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1"]
    assert _options.usable_cores() == fastrnn.functional.available_cpus()


def test_install_hints_name_the_package_extra() -> None:
    """Every ``pip install`` hint in the package's code reads ``pip install "fastrnn[extra]"``
    (or ``pip install .``, a build from source)."""
    root = Path(fastrnn.__file__).parent
    hints = [
        (str(path.relative_to(root)), m.group(1))
        for path in sorted(root.rglob("*.py"))
        for m in re.finditer(r"pip install\s+(\S+)", path.read_text(encoding="utf-8"))
    ]
    assert ("tools/cli.py", '"fastrnn[plot]",') in hints
    bad = [(f, h) for f, h in hints if not re.fullmatch(r'(?:"fastrnn\[\w+\]"|\.)\W*', h)]
    assert bad == []


def test_first_progress_line_shows_only_measured_metrics(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # 40 steps: the test MSE is measured every 2nd step, so none exists at the first line
    argv = ["adding", "--T", "4", "--steps", "40", "--hidden", "2", "--batch", "2", "--plot", "",
            "--cells", "gru"]  # fmt: skip
    assert cli.main(argv) == 0
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("adding  gru [") and " 1/40 " in lines[0]
    assert "loss" in lines[0] and "test" not in lines[0]
    assert all("nan" not in line for line in lines)
    assert "test " in lines[-1]


# ----------------------------------------------------------------------- the demo's samples


def test_indentation_as_level_changes_round_trip() -> None:
    eleven = " " * 11  # two levels and 3 spaces
    src = (f"class A:\n    def f(self):\n        return 1\n\n      # six\n    x = [\n"
           f"{eleven}2]\ny = 3\n   \n")  # fmt: skip
    enc = text.encode_indentation(src)
    I, D = text.INDENT, text.DEDENT
    assert enc == (f"class A:\n{I}def f(self):\n{I}return 1\n\n{D}  # six\nx = [\n"
                   f"{I}   2]\n{D}{D}y = 3\n\n")  # fmt: skip
    assert text.decode_indentation(enc) == src.replace("\n   \n", "\n\n")
    corpus = text.default_corpus(200_000)
    assert text.decode_indentation(text.encode_indentation(corpus)) == re.sub(
        r"(?m)^ +$", "", corpus
    )
    # a sample may put markers anywhere: the level never goes below 0, stray ones are dropped
    assert text.decode_indentation(f"a{I}b\n{D}{D}{I}c\n{I}{I}") == "ab\n    c\n"
    with pytest.raises(ValueError, match="text: already holds"):
        text.encode_indentation(f"x{I}")
    with pytest.raises(ValueError, match="width: must be >= 1"):
        text.decode_indentation("x", width=0)


def test_samples_follow_the_indentation_rule() -> None:
    vocab = text.CharVocab.from_text(f"ab\n{text.INDENT}{text.DEDENT}")
    I, D = vocab.chars.index(text.INDENT), vocab.chars.index(text.DEDENT)
    rule = cli._Indentation(vocab, "a\n")
    assert rule.mask(np.zeros(vocab.size))[D] == -np.inf  # level 0: no DEDENT
    assert rule.mask(np.zeros(vocab.size))[I] == 0
    rule.advance(text.INDENT)
    assert rule.level == 1 and rule.mask(np.zeros(vocab.size))[D] == 0
    rule.advance("b")  # within a line: neither
    assert np.isinf(rule.mask(np.zeros(vocab.size))[[I, D]]).all()


def test_demo_defaults_give_a_readable_low_temperature_sample(tmp_path: Path) -> None:
    """The README's first command: with every default, the temperature-0.2 sample is text, not
    an ever deeper indentation (it was ~300 spaces: in indented code a space is likelier than any
    other character after a run of spaces, which a low temperature makes certain)."""
    # one thread: the same bits as the default's (results do not depend on the thread count),
    # without the threads' waits for each other on a busy machine
    out = run("demo", "--temperatures", "0.2", "--threads", "1", cwd=tmp_path)
    sample = out.split("--- sample, temperature 0.2 ---\n")[1]
    assert len(sample) >= 150
    assert max(len(r) for r in re.findall(r" +", sample)) <= 16, sample
    assert sum(c.isspace() for c in sample) < 0.5 * len(sample), sample
    assert sum(c.isalpha() for c in sample) > 0.4 * len(sample), sample
