"""A peft checkpoint folder, without pickle: the adapter (safetensors), optimizer, scheduler and RNG state
(`statefiles`), and `trainer_state.json` with the run's counters and where in the data it stopped.

The run decides what its state is (see `_Run.checkpoint_state`); here it is written, read back and checked to belong
to the run that resumes it. Under FSDP the optimizer state is saved whole (gathered onto rank 0) and cut again like
each parameter on load, so a checkpoint does not depend on the number of processes that wrote it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from tunery.errors import FailedPrecondition
from tunery_trainer.backends import statefiles
from tunery_trainer.backends.common import atomic_dir

STATE_FILE = "trainer_state.json"


def full_optimizer_state(optimizer: torch.optim.Optimizer, trainable: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """`<param index>.<name>` -> whole tensor on the CPU: the checkpoint format, gathered from the shards."""
    out = {}
    for i, p in enumerate(trainable):
        for k, v in optimizer.state.get(p, {}).items():
            out[f"{i}.{k}"] = (v.full_tensor() if hasattr(v, "full_tensor") else v).detach().cpu().contiguous()
    return out


def write(
    path: Path,
    model: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    state: dict[str, Any],
    adapter: dict[str, torch.Tensor] | None = None,
    opt_tensors: dict[str, torch.Tensor] | None = None,
) -> None:
    """The whole folder or nothing (written aside, renamed into place); `adapter`/`opt_tensors`: gathered already."""
    with atomic_dir(path) as tmp:
        model.save_pretrained(str(tmp), safe_serialization=True, state_dict=adapter)
        statefiles.save_optimizer(tmp, optimizer, opt_tensors)
        statefiles.save_scheduler(tmp, scheduler)
        statefiles.save_rng(tmp, "rng")
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=2))


def load_adapter(model: Any, path: Path) -> None:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(model, load_file(str(path / "adapter_model.safetensors")))


def read_state(path: Path, expected: tuple[int, int, int]) -> dict[str, Any]:
    """The checkpoint's trainer_state.json, refused unless it is a peft checkpoint of a run with the same
    (total steps, training examples, seed)."""
    state_file = path / STATE_FILE
    if not state_file.exists():
        raise FailedPrecondition(f"{path} is not a peft backend checkpoint (no {STATE_FILE})", code="bad_checkpoint")
    state: dict[str, Any] = json.loads(state_file.read_text())
    theirs = (state.get("total_steps"), state["data"].get("examples"), state["data"].get("seed"))
    if state.get("backend") != "peft" or expected != theirs:
        raise FailedPrecondition(
            f"checkpoint {path} belongs to another run (total steps, examples, seed {theirs}; this run {expected})",
            code="bad_checkpoint",
        )
    return state


def load_training_state(
    path: Path, optimizer: torch.optim.Optimizer, scheduler: Any, trainable: list[torch.Tensor], fsdp: bool
) -> None:
    """Optimizer, scheduler and random generators as they were when the checkpoint was written."""
    opt_state, groups = statefiles.read_optimizer(path)
    if fsdp:  # cut each whole state tensor like its parameter
        from torch.distributed.tensor import distribute_tensor

        optimizer.load_state_dict({"state": {}, "param_groups": groups})
        for i, st in opt_state.items():
            p: Any = trainable[i]
            optimizer.state[p] = {
                k: distribute_tensor(v.to(p.device, p.dtype), p.device_mesh, p.placements) if v.shape == p.shape else v
                for k, v in st.items()
            }
    else:
        optimizer.load_state_dict({"state": opt_state, "param_groups": groups})
    statefiles.load_scheduler(path, scheduler)
    statefiles.load_rng(path, "rng")
