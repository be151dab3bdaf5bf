"""A deliberately simple third-party backend: fits one number per example length by gradient descent.

It honours the whole backend contract (steps, checkpoints with resume, control, validation, adapter output) without
torch, so queue, worker and plugin tests run in seconds. It only depends on the contract's shape, not on Tunery's
classes, as an outside package would.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from safetensors.numpy import load_file, save_file


@dataclass
class EchoConfig:
    step_seconds: float = field(default=0.0, metadata={"help": "Sleep per step, to make jobs last in tests."})
    fail_at_step: int = field(default=0, metadata={"help": "Raise at this step (0: never), to test failures."})
    crash_at_step: int = field(
        default=0, metadata={"help": "Kill the worker process at this step (0: never), to test crash recovery."}
    )


class EchoBackend:
    name: ClassVar[str] = "echo"
    description: ClassVar[str] = "Test backend from a separate package: fits a scalar, checkpoints, resumes."
    methods: ClassVar[tuple[str, ...]] = ("sft",)
    config_class: ClassVar[type] = EchoConfig

    def train(self, ctx: Any, config: EchoConfig) -> Any:
        from tunery_trainer.backends.base import CheckpointInfo, StepMetrics, TrainingResult, ValidationMetrics

        spec = ctx.spec
        n = len(ctx.train_examples)
        per_epoch = math.ceil(n / spec.batch_size)
        total = per_epoch * spec.n_epochs
        target = np.array([float(len(json.dumps(e)) % 7) for e in ctx.train_examples], dtype=np.float32)
        w = np.zeros(1, dtype=np.float32)
        start = 0
        if ctx.resume_from is not None:
            state = load_file(str(ctx.resume_from / "state.safetensors"))
            w = state["w"]
            start = int(json.loads((ctx.resume_from / "trainer_state.json").read_text())["step"])
        ctx.reporter.on_start(total, start)
        loss = 0.0
        ckpt_dir = ctx.output_dir / "checkpoints"

        def checkpoint(step: int) -> None:
            path = ckpt_dir / f"step-{step:06d}"
            path.mkdir(parents=True, exist_ok=True)
            save_file({"w": w}, str(path / "state.safetensors"))
            (path / "trainer_state.json").write_text(json.dumps({"step": step}))
            ctx.reporter.on_checkpoint(CheckpointInfo(step=step, epoch=step / per_epoch, path=path))

        for step in range(start + 1, total + 1):
            control = ctx.reporter.control()
            if control != "continue":
                if control == "pause":
                    checkpoint(step - 1)
                return TrainingResult("cancelled" if control == "cancel" else "paused", step - 1, total, 0, None)
            if config.crash_at_step and step == config.crash_at_step:
                os._exit(137)
            if config.fail_at_step and step == config.fail_at_step:
                raise RuntimeError(f"echo backend asked to fail at step {step}")
            i = (step - 1) % per_epoch
            batch = target[i * spec.batch_size : (i + 1) * spec.batch_size]
            grad = float(2 * (w[0] - batch.mean()))
            loss = float(((w[0] - batch) ** 2).mean())
            w = w - spec.learning_rate * 1000 * grad
            time.sleep(config.step_seconds)
            ctx.reporter.on_step(
                StepMetrics(step, total, step / per_epoch, loss, spec.learning_rate, len(batch), 1000.0, 0.0)
            )
            if (spec.checkpoint_every_steps and step % spec.checkpoint_every_steps == 0) or step % per_epoch == 0:
                checkpoint(step)
        if ctx.validation_examples:
            ctx.reporter.on_validation(ValidationMetrics(total, loss, 0.5))
        adapter = ctx.output_dir / "adapter"
        adapter.mkdir(parents=True, exist_ok=True)
        save_file({"w": w}, str(adapter / "adapter_model.safetensors"))
        (adapter / "tunery_metadata.json").write_text(json.dumps({**ctx.metadata, "steps": total}))
        return TrainingResult("completed", total, total, n * spec.n_epochs, adapter, {"train_loss": loss})
