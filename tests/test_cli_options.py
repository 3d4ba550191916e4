"""The parsers every sub-command shares (issue 19, a newcomer's path between commands).

- ``--help`` needs no torch, transformers or FAISS: building every parser imports none of them (checked in a
  fresh interpreter, not by timing), and the top-level package imports its public names lazily.
- ``python -m textsiamese`` is the command.
- The choice lists the parsers repeat match the library's.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

import textsiamese
from textsiamese.cli import build_parser, main

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


def test_the_choices_the_parsers_repeat_match_the_library() -> None:
    from textsiamese import accelerate, onnx_backend
    from textsiamese.cli import common
    from textsiamese.search import kinds

    assert common.BACKENDS == onnx_backend.BACKENDS
    assert common.PRECISIONS == accelerate.PRECISIONS
    assert common.INDEX_KIND_NAMES == kinds.KIND_NAMES
    assert common.INDEX_METRICS == kinds.METRICS


def test_help_of_every_command_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    for command in PARSERS:
        with pytest.raises(SystemExit) as done:
            main([*command.split()[1:], "--help"])
        assert done.value.code == 0, command
    assert "usage: textsiamese" in capsys.readouterr().out
