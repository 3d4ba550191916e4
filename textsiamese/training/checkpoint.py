"""Checkpoints: everything needed to continue a run exactly, written atomically.

``OUTPUT/checkpoint/`` holds ``model/`` (a model directory) and ``state.pt``: optimizer, scheduler, the
loss's own parameters, RNG states, the step and data position (epoch, batch index), the dev tracker and the
run's wall time so far. A checkpoint is written to a staging folder and swapped in whole
(``data.writers.replace_directory``), so a crash or a full disk mid-write leaves the previous one usable.
The trainer decides what goes into ``state.pt``; this module writes, reads and restores it.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model

from textsiamese.data.writers import replace_directory
from textsiamese.losses import SiameseLoss
from textsiamese.model import WEIGHTS_FILE, SiameseModel
from textsiamese.training.results import TrainingError

CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "state.pt"


def write_checkpoint(target: Path, model: SiameseModel, state: dict[str, Any]) -> None:
    """Write ``model`` and ``state`` as the checkpoint ``target``, replacing the one there in one step; on
    any failure the staging folder is removed and the previous checkpoint is left as it was."""
    staging = Path(tempfile.mkdtemp(prefix=".checkpoint.", dir=target.parent))
    try:
        model.save(staging / "model")
        torch.save(state, staging / STATE_FILE)
        replace_directory(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def read_checkpoint(
    output: Path, world_size: int, total_steps: int, announce: bool
) -> tuple[Path, dict[str, Any]]:
    """The checkpoint folder of ``output`` and its state, checked against this run: ``TrainingError`` when
    there is none or it belongs to a run of another length; a note (``announce``) when it was written by
    another number of processes (it resumes, but the batches differ from an uninterrupted run)."""
    source = output / CHECKPOINT_DIR
    if not (source / STATE_FILE).is_file():
        raise TrainingError(f"--resume: no checkpoint in {source}")
    state = torch.load(source / STATE_FILE, map_location="cpu", weights_only=True)
    if state["world_size"] != world_size and announce:
        print(
            f"note: checkpoint written by {state['world_size']} processes, resuming with "
            f"{world_size}; batches differ from an uninterrupted run",
            flush=True,
        )
    if state["total_steps"] != total_steps:
        raise TrainingError(
            f"--resume: the checkpoint's run has {state['total_steps']} steps, this one {total_steps}; "
            "resume with the same recipe and options"
        )
    return source, state


def restore_training(
    source: Path,
    state: dict[str, Any],
    model: SiameseModel,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    loss: SiameseLoss,
    device: torch.device,
) -> None:
    """Load the checkpoint's weights, optimizer, scheduler and loss parameters into this run's objects."""
    load_model(model.towers, str(source / "model" / WEIGHTS_FILE), strict=True, device=str(device))
    optimizer.load_state_dict(state["optimizer"])
    for group in optimizer.param_groups:
        # A checkpoint from before the sync-free loop stored fused=False; only the fused kernel skips a
        # step on found_inf, so this run's setting wins over the stored one.
        group["fused"], group["foreach"] = True, None
    scheduler.load_state_dict(state["scheduler"])
    loss.load_state_dict(state["loss"])


def rng_state(device: torch.device) -> dict[str, Any]:
    """The RNG states a checkpoint keeps (CPU, and the device's on CUDA), so dropout continues exactly."""
    return {
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
    }


def restore_rng(state: dict[str, Any], device: torch.device) -> None:
    """Set the RNG states ``rng_state`` saved."""
    torch.set_rng_state(state["rng_cpu"])
    if state["rng_cuda"] is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["rng_cuda"], device)
