"""The bridge from the HF Trainer's events to the Reporter, and from `reporter.control()` to the Trainer's flags."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from tunery_trainer.backends.base import CheckpointInfo, Outcome, StepMetrics, TrainingContext, ValidationMetrics


def callback_class() -> type:
    """`ReporterBridge`, defined on first use: transformers is imported only when a trl job runs."""
    from transformers import TrainerCallback

    class ReporterBridge(TrainerCallback):  # type: ignore[misc]
        """HF Trainer events → Reporter; reporter.control() → the Trainer's control flags."""

        def __init__(self, ctx: TrainingContext, has_eval: bool) -> None:
            self.ctx, self.rep = ctx, ctx.reporter
            self.steps_per_epoch, self.has_eval = 1, has_eval  # set once the trainer has prepared (packed) the data
            self.outcome: Outcome = "completed"
            self.window_time, self.step_t0 = 0.0, 0.0
            self.tokens_seen = 0
            self.step_times: list[float] = []
            self.losses: list[float] = []
            self.last_eval: ValidationMetrics | None = None
            self.saved_step = self.evaluated_step = -1

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.tokens_seen = state.num_input_tokens_seen
            self.rep.on_start(state.max_steps, state.global_step)

        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.step_t0 = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            dt = time.perf_counter() - self.step_t0
            self.window_time += dt
            self.step_times = [*self.step_times[-19:], dt]
            if state.global_step % self.steps_per_epoch == 0 or state.global_step >= state.max_steps:
                control.should_save = True  # every epoch end, besides checkpoint_every_steps
                control.should_evaluate = self.has_eval
            if not control.should_log:  # else on_log asks, so the step is reported before it stops
                self._ask(control)

        def _ask(self, control: Any) -> None:
            # Flags set here still take effect for this step: the Trainer logs, evaluates, saves, then checks them.
            action = self.rep.control()
            if action == "cancel":
                self.outcome = "cancelled"
                control.should_training_stop = True
                control.should_evaluate = False
            elif action == "pause":
                self.outcome = "paused"
                control.should_save = True
                control.should_training_stop = True
                control.should_evaluate = False

        def on_epoch_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            # Already done at this step (epoch end) or stopped: no second checkpoint/evaluation of the same step.
            if self.outcome != "completed" or self.saved_step == state.global_step:
                control.should_save = False
            if self.outcome != "completed" or self.evaluated_step == state.global_step:
                control.should_evaluate = False

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kw: Any) -> None:
            if not logs or "loss" not in logs:
                return
            tokens = state.num_input_tokens_seen - self.tokens_seen
            self.tokens_seen = state.num_input_tokens_seen
            self.losses.append(float(logs["loss"]))
            eta = (state.max_steps - state.global_step) * sum(self.step_times) / max(len(self.step_times), 1)
            self.rep.on_step(
                StepMetrics(
                    step=state.global_step,
                    total_steps=state.max_steps,
                    epoch=float(state.epoch or 0),
                    loss=float(logs["loss"]),
                    learning_rate=float(logs.get("learning_rate", 0.0)),
                    tokens=int(tokens),
                    tokens_per_second=tokens / self.window_time if self.window_time else 0.0,
                    eta_seconds=eta,
                )
            )
            self.window_time = 0.0
            self._ask(control)

        def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            # The Trainer wrote checkpoint-N completely; one rename publishes it under the contract's name.
            src = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            dst = Path(args.output_dir) / f"step-{state.global_step:06d}"
            if not src.exists():
                return
            if dst.exists():
                shutil.rmtree(dst)
            src.rename(dst)
            self.saved_step = state.global_step
            self.rep.on_checkpoint(CheckpointInfo(state.global_step, float(state.epoch or 0), dst))

        def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None, **kw: Any):
            if not metrics or "eval_loss" not in metrics:
                return
            self.evaluated_step = state.global_step
            self.last_eval = ValidationMetrics(
                step=state.global_step,
                loss=float(metrics["eval_loss"]),
                # DPO has no token accuracy; its closest analogue is how often chosen outranks rejected.
                token_accuracy=float(
                    metrics.get("eval_mean_token_accuracy", metrics.get("eval_rewards/accuracies", 0))
                ),
            )
            self.rep.on_validation(self.last_eval)

    return ReporterBridge
