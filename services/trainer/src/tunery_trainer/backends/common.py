"""What both built-in backends share, so neither plugin imports the other: publishing folders atomically, the
adapter's metadata, LoRA target lookup and the training data as tokens (resume state is in `statefiles`)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from tunery.errors import InvalidArgument
from tunery_trainer.backends.base import TrainingContext
from tunery_trainer.data import EncodedDataset, encode_sft


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Write a folder under a temporary name and rename it into place, so readers never see half of it."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        yield tmp
        if final.exists():
            old = final.with_name(f".{final.name}-old-{os.getpid()}")
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_metadata(adapter_dir: Path, ctx: TrainingContext, backend: str, config: Any, metrics: dict[str, Any]) -> None:
    """tunery_metadata.json: where the adapter came from and how it was trained (read by serving and evaluation)."""
    meta = {
        **ctx.metadata,
        "backend": backend,
        "hyperparameters": asdict(ctx.spec),
        "backend_config": asdict(config),
        "metrics": metrics,
    }
    (adapter_dir / "tunery_metadata.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")


def lora_targets(model: torch.nn.Module, wanted: tuple[str, ...]) -> list[str]:
    """The requested module names this model has; an error naming the ones it has when none match."""
    present = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    found = [t for t in wanted if t in present]
    if not found:
        raise InvalidArgument(
            f"none of the LoRA target modules {', '.join(wanted)} exist in this model; it has: "
            f"{', '.join(sorted(present))}",
            code="invalid_lora_targets",
            field="lora.target_modules",
        )
    return found


def encode_datasets(ctx: TrainingContext, tokenizer: Any) -> tuple[EncodedDataset, EncodedDataset]:
    """(train, validation) SFT sets as every backend trains them; refuses a training set with nothing to train."""
    train = encode_sft(tokenizer, ctx.train_examples, ctx.spec.max_seq_length)
    valid = encode_sft(tokenizer, ctx.validation_examples, ctx.spec.max_seq_length)
    if not train.examples:
        raise InvalidArgument(
            f"no training example has a trained token ({train.dropped} dropped: every assistant weight is 0 or "
            f"max_seq_length {ctx.spec.max_seq_length} cuts off every answer)",
            code="nothing_to_train",
            field="training_file",
        )
    return train, valid
