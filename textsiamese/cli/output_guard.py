"""Refuse to train into a directory that already holds a run, unless ``--resume`` or ``--overwrite`` says why.

A second ``textsiamese train … --output runs/x`` used to replace the first run's ``checkpoint/`` and
``final/`` without a word, keep its ``best/`` beside the new model and append to its ``metrics.jsonl``: the
first run was lost and the directory described neither. Now the command stops before anything is written
and says which two choices there are; ``--overwrite`` removes the old run's outputs first, so the new run
starts in a clean directory.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from textsiamese.errors import ConfigError

# What a run writes in its output directory (see textsiamese.training.recipes): the last stage's outputs
# and the folders of the stages before it. Nothing else in the directory is a run's, so nothing else counts
# or is removed.
RUN_OUTPUTS = ("checkpoint", "final", "best", "metrics.jsonl", "results.json", "recipe.yaml", "tensorboard")
STAGE_DIR = re.compile(r"stage-\d+-")


def run_outputs(directory: Path) -> list[Path]:
    """The outputs of an earlier run found in ``directory`` (none when it is missing or holds no run)."""
    if not directory.is_dir():
        return []
    found = [directory / name for name in RUN_OUTPUTS if (directory / name).exists()]
    found += sorted(p for p in directory.iterdir() if p.is_dir() and STAGE_DIR.match(p.name))
    return found


def check_run_directory(directory: Path, *, resume: bool, overwrite: bool, is_main: bool = True) -> None:
    """Stop with a one-line ``ConfigError`` if ``directory`` holds a run and neither ``resume`` nor
    ``overwrite`` is given; with ``overwrite``, remove that run's outputs.

    Call it before any training starts: on refusal nothing in the directory has been touched. Under a
    multi-process launcher only the main process (``is_main``) removes; the others see the same files and
    reach the same decision.
    """
    outputs = run_outputs(directory)
    if not outputs or resume:
        return
    if not overwrite:
        raise ConfigError(
            f"{directory} already holds a training run; pass --resume to continue it or --overwrite to "
            "start over"
        )
    if is_main:
        for path in outputs:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
