"""The parsers every sub-command shares (issue 19, a newcomer's path between commands).

- ``--help`` needs no torch, transformers or FAISS: building every parser imports none of them (checked in a
  fresh interpreter, not by timing), and the top-level package imports its public names lazily.
- ``python -m textsiamese`` is the command.
- One progress convention: ``--progress`` / ``--no-progress`` wherever there is a bar, default: when stderr
  is a terminal.
- Help shows defaults, and no ``default: None`` / ``default: False`` noise.
- The choice lists the parsers repeat match the library's.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

import textsiamese
from textsiamese.cli import build_parser, main
from textsiamese.cli.common import count, show_progress

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "faiss", "sklearn", "scipy")


def _python(code_or_args: list[str]) -> subprocess.CompletedProcess[str]:
    """Run this checkout's package in a fresh interpreter."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, *code_or_args], capture_output=True, text=True, timeout=300, cwd=REPO, env=env
    )


def _parsers(
    parser: argparse.ArgumentParser, name: str = "textsiamese"
) -> dict[str, argparse.ArgumentParser]:
    """Every parser below ``parser`` (``index build`` included), by command line."""
    found = {name: parser}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, subparser in action.choices.items():
                found.update(_parsers(subparser, f"{name} {sub}"))
    return found


PARSERS = _parsers(build_parser())


def _option(command: str, flag: str) -> argparse.Action:
    return next(a for a in PARSERS[command]._actions if flag in a.option_strings)


def _help_of(command: str, flag: str) -> str:
    """The help line of one option as ``--help`` shows it (defaults filled in)."""
    return str(PARSERS[command]._get_formatter()._expand_help(_option(command, flag)))


def _minimal_argv(parser: argparse.ArgumentParser) -> list[str]:
    """Just the required arguments, with a value each (the first choice where there are choices)."""
    argv: list[str] = []
    for action in parser._actions:
        if action.required:
            value = next(iter(action.choices)) if action.choices else "x"
            argv += [*action.option_strings[:1], value]
    return argv


def test_building_the_parsers_imports_no_heavy_library() -> None:
    done = _python(
        [
            "-c",
            "import sys, textsiamese, textsiamese.cli; textsiamese.cli.build_parser(); "
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))",
        ]
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_every_public_name_still_imports_from_the_package() -> None:
    for name in textsiamese.__all__:
        assert getattr(textsiamese, name) is not None, name
    from textsiamese import Index, SiameseModel, load

    assert SiameseModel.__name__ == "SiameseModel" and callable(load) and Index.__name__ == "Index"
    assert "load" in dir(textsiamese)
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        _ = textsiamese.nothing_here


def test_python_dash_m_textsiamese_is_the_command(tmp_path: Path) -> None:
    done = _python(["-m", "textsiamese", "--version"])
    assert done.returncode == 0 and done.stdout.strip() == f"textsiamese {textsiamese.__version__}"
    done = _python(["-m", "textsiamese", "score", "--pairs", str(tmp_path / "absent.csv")])
    assert done.returncode == 2 and done.stderr.strip().endswith("absent.csv: no such file")


PROGRESS_COMMANDS = [
    "textsiamese score",
    "textsiamese eval",
    "textsiamese calibrate",
    "textsiamese train",
    "textsiamese encode",
    "textsiamese index build",
    "textsiamese index add",
    "textsiamese mine",
    "textsiamese paraphrases",
]


def test_every_command_with_a_progress_bar_takes_both_spellings() -> None:
    with_progress = {c for c, p in PARSERS.items() if any(a.dest == "progress" for a in p._actions)}
    assert with_progress == set(PROGRESS_COMMANDS)
    for command in PROGRESS_COMMANDS:
        action = _option(command, "--progress")
        assert "--no-progress" in action.option_strings and action.default is None, command
        parser = PARSERS[command]
        for flag, expected in (("--progress", True), ("--no-progress", False), (None, None)):
            args = parser.parse_args([*_minimal_argv(parser), *([flag] if flag else [])])
            assert args.progress is expected, (command, flag)


class _Terminal(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize("tty", [True, False])
def test_the_progress_bar_defaults_to_whether_stderr_is_a_terminal(
    tty: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stderr", _Terminal(tty))
    assert show_progress(argparse.Namespace(progress=None)) is tty
    assert show_progress(argparse.Namespace(progress=True)) is True
    assert show_progress(argparse.Namespace(progress=False)) is False


@pytest.mark.parametrize(
    ("command", "flag", "shown"),
    [
        ("textsiamese score", "--chunk-size", "(default: 4096)"),
        ("textsiamese eval", "--folds", "(default: 5)"),
        ("textsiamese calibrate", "--method", "(default: platt)"),
        ("textsiamese calibrate", "--objective", "(default: accuracy)"),
        ("textsiamese enroll", "--strategy", "(default: centroid for a new set"),
        ("textsiamese classify", "--strategy", "(default: the one stored by enroll)"),
        ("textsiamese enroll", "--threshold", "(default: chosen on --dev"),
        ("textsiamese mine", "--kind", "(default: auto)"),
        ("textsiamese paraphrases", "--kind", "(default: flat)"),
        ("textsiamese paraphrases", "--max-neighbors", "(default: 100)"),
        ("textsiamese encode", "--errors", "(default: strict)"),
    ],
)
def test_help_says_the_default(command: str, flag: str, shown: str) -> None:
    assert shown in _help_of(command, flag)


def test_every_default_is_said_and_no_help_prints_an_empty_one() -> None:
    for command, parser in PARSERS.items():
        text = " ".join(parser.format_help().split())
        for noise in ("default: None", "default: False", "default: True", "default: []", "default: )"):
            assert noise not in text, (command, noise)
        for action in parser._actions:
            if action.help and action.option_strings and action.nargs != 0 and action.default:
                assert "default" in _help_of(command, action.option_strings[0]), (command, action.dest)


def test_the_choices_the_parsers_repeat_match_the_library() -> None:
    from textsiamese.cli import common
    from textsiamese.inference import long_text
    from textsiamese.inference import onnx as onnx_backend
    from textsiamese.inference import precision as accelerate
    from textsiamese.search import kinds

    assert common.BACKENDS == onnx_backend.BACKENDS
    assert common.PRECISIONS == accelerate.PRECISIONS
    assert common.INDEX_KIND_NAMES == kinds.KIND_NAMES
    assert common.INDEX_METRICS == kinds.METRICS
    assert common.LONG_TEXT_MODES == long_text.MODES
    assert common.CHUNK_POOLINGS == long_text.CHUNK_POOLINGS
    from textsiamese.cli import enroll
    from textsiamese.decisions import fewshot

    assert enroll.FINE_TUNE_LOSSES == fewshot.LOSSES
    tuned = fewshot.FineTuneConfig()
    assert {name: getattr(tuned, name) for name in enroll.FINE_TUNE_DEFAULTS} == enroll.FINE_TUNE_DEFAULTS


def test_counts_are_in_words() -> None:
    assert [count(n, "row") for n in (0, 1, 2)] == ["0 rows", "1 row", "2 rows"]
    assert count(1, "class", "classes") == "1 class" and count(3, "class", "classes") == "3 classes"


def test_help_of_every_command_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    for command in PARSERS:
        with pytest.raises(SystemExit) as done:
            main([*command.split()[1:], "--help"])
        assert done.value.code == 0, command
    assert "usage: textsiamese" in capsys.readouterr().out
