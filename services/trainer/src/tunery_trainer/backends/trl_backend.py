"""The `trl` backend: TRL's SFTTrainer (and DPOTrainer for preference data) with a PEFT LoRA adapter.

The reference implementation: what the Hugging Face ecosystem does by default, plus DPO. SFT examples are tokenized
by `tunery_trainer.data` (the same labels as the peft backend: assistant turns through end-of-turn, `weight: 0`
honoured) and handed to TRL pre-tokenized with a `labels` column, which TRL keeps as is. A TrainerCallback bridges
the HF Trainer's events to the Reporter and its control flags to `reporter.control()`.

Checkpoints hold no pickle: the Trainer's optimizer, scheduler, RNG and training-arguments files (torch.save
pickles) are written as safetensors and JSON instead, and read back from them on resume.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

import torch

from tunery.errors import InvalidArgument
from tunery_trainer.backends.base import (
    CheckpointInfo,
    Method,
    Outcome,
    StepMetrics,
    TrainingContext,
    TrainingResult,
    ValidationMetrics,
)
from tunery_trainer.backends.peft_backend import atomic_dir, lora_targets, write_metadata
from tunery_trainer.data import encode_sft, preference_rows

# TrainingArguments this backend sets from the job; extra_args may not override them.
_OWNED = frozenset(
    {
        "output_dir",
        "num_train_epochs",
        "max_steps",
        "per_device_train_batch_size",
        "per_device_eval_batch_size",
        "gradient_accumulation_steps",
        "learning_rate",
        "weight_decay",
        "warmup_steps",
        "warmup_ratio",
        "lr_scheduler_type",
        "max_grad_norm",
        "seed",
        "data_seed",
        "logging_steps",
        "save_strategy",
        "save_steps",
        "eval_strategy",
        "eval_steps",
        "max_length",
        "packing",
        "padding_free",
        "report_to",
        "push_to_hub",
        "resume_from_checkpoint",
        "save_only_model",
        "beta",
    }
)


@cache
def _trl_fields() -> dict[str, frozenset[str]]:
    from trl import DPOConfig, SFTConfig

    return {
        "sft": frozenset(f.name for f in dataclasses.fields(SFTConfig)),
        "dpo": frozenset(f.name for f in dataclasses.fields(DPOConfig)),
    }


@dataclass(frozen=True, slots=True)
class TrlBackendConfig:
    padding_free: bool = field(
        default=False,
        metadata={"help": "Flatten each batch into one row without padding (TRL's padding_free); SFT and DPO."},
    )
    packing: bool = field(
        default=False,
        metadata={"help": "SFT: pack examples into max_seq_length blocks (TRL's best-fit-decreasing packing)."},
    )
    lr_scheduler: str = field(default="linear", metadata={"help": "TrainingArguments.lr_scheduler_type."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm; 0 disables."})
    dpo_beta: float = field(
        default=0.1, metadata={"help": "DPO: strength of the pull towards the reference model (DPOConfig.beta)."}
    )
    extra_args: dict[str, Any] = field(
        default_factory=dict,
        metadata={
            "help": 'More SFTConfig/DPOConfig arguments, e.g. {"gradient_checkpointing": false}; checked against '
            "TRL's fields. The ones the job sets (epochs, batch size, learning rate, checkpointing, ...) are refused."
        },
    )

    def __post_init__(self) -> None:
        if self.dpo_beta <= 0:
            raise ValueError(f"dpo_beta must be > 0, not {self.dpo_beta}")
        owned = sorted(set(self.extra_args) & _OWNED)
        if owned:
            raise ValueError(f"extra_args may not set {', '.join(owned)}: the job's own settings control them")
        if not self.extra_args:
            return  # no need to import TRL (seconds) just to validate nothing
        known = _trl_fields()["sft"] | _trl_fields()["dpo"]
        unknown = sorted(set(self.extra_args) - known)
        if unknown:
            raise ValueError(
                f"extra_args has keys that are neither SFTConfig nor DPOConfig fields: {', '.join(unknown)}"
            )


def _callback_class() -> type:
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


class TrlBackend:
    name: ClassVar[str] = "trl"
    description: ClassVar[str] = (
        "TRL's SFTTrainer / DPOTrainer with a PEFT LoRA adapter: the Hugging Face reference, and preference tuning."
    )
    methods: ClassVar[tuple[Method, ...]] = ("sft", "dpo")
    config_class: ClassVar[type] = TrlBackendConfig

    def train(self, ctx: TrainingContext, config: TrlBackendConfig | None = None) -> TrainingResult:
        from datasets import Dataset
        from peft import LoraConfig
        from transformers import AutoModelForCausalLM, AutoTokenizer

        config = config or TrlBackendConfig()
        spec = ctx.spec
        if spec.method not in self.methods:
            raise InvalidArgument(f"unknown method {spec.method}", code="unsupported_method", field="method")
        unknown = sorted(set(config.extra_args) - _trl_fields()[spec.method])
        if unknown:
            raise InvalidArgument(
                f"extra_args {', '.join(unknown)} are not {spec.method.upper()}Config fields",
                code="invalid_backend_config",
                field=f"backend_config.extra_args.{unknown[0]}",
            )
        tok = AutoTokenizer.from_pretrained(str(ctx.model_dir))
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        model = AutoModelForCausalLM.from_pretrained(str(ctx.model_dir), dtype=torch.float32)
        lora = spec.lora
        peft_config = LoraConfig(
            r=lora.rank,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            target_modules=lora_targets(model, lora.target_modules),
            task_type="CAUSAL_LM",
        )

        if spec.method == "sft":
            train_enc = encode_sft(tok, ctx.train_examples, spec.max_seq_length)
            valid_enc = encode_sft(tok, ctx.validation_examples, spec.max_seq_length)
            if not train_enc.examples:
                raise InvalidArgument(
                    "no training example has a trained token", code="nothing_to_train", field="training_file"
                )
            train_ds = Dataset.from_list([{"input_ids": e.input_ids, "labels": e.labels} for e in train_enc.examples])
            valid_ds = (
                Dataset.from_list([{"input_ids": e.input_ids, "labels": e.labels} for e in valid_enc.examples])
                if valid_enc.examples
                else None
            )
        else:
            train_ds = Dataset.from_list(preference_rows(_preference_only(ctx.train_examples), tok))
            valid_rows = preference_rows(_preference_only(ctx.validation_examples), tok)
            valid_ds = Dataset.from_list(valid_rows) if valid_rows else None
        ckpt_dir = ctx.output_dir / "checkpoints"
        every = spec.checkpoint_every_steps
        common: dict[str, Any] = {
            "output_dir": str(ckpt_dir),
            "num_train_epochs": spec.n_epochs,
            "per_device_train_batch_size": spec.batch_size,
            "per_device_eval_batch_size": spec.batch_size,
            "gradient_accumulation_steps": spec.gradient_accumulation_steps,
            "learning_rate": spec.learning_rate,
            "weight_decay": spec.weight_decay,
            "warmup_steps": min(spec.warmup_ratio, 0.999999),  # a float below 1 is a ratio
            "lr_scheduler_type": config.lr_scheduler,
            "max_grad_norm": config.max_grad_norm,
            "seed": spec.seed,
            "logging_steps": max(spec.logging_steps, 1),
            "save_strategy": "steps" if every else "epoch",
            "save_steps": every or 500,
            "eval_strategy": ("steps" if spec.eval_every_steps else "epoch") if valid_ds is not None else "no",
            "eval_steps": spec.eval_every_steps or None,
            "max_length": spec.max_seq_length,
            "padding_free": config.padding_free,
            "report_to": [],
            "disable_tqdm": True,
            "save_only_model": False,
            "include_num_input_tokens_seen": "all" if (config.padding_free or config.packing) else "non_padding",
        }
        if not torch.cuda.is_available():
            common["bf16"] = False  # CPU autocast to bf16 is emulated (slow) on CPUs without AMX/AVX512-BF16
        bridge = _callback_class()(ctx, valid_ds is not None)
        trainer: Any
        if spec.method == "sft":
            from trl import SFTConfig, SFTTrainer

            sft = {**common, "packing": config.packing}
            if config.padding_free and not config.packing:
                sft["max_length"] = None  # TRL refuses a max_length it can't enforce; encode_sft truncated already
            trainer = _safe_checkpoints(SFTTrainer)(
                model=model,
                args=SFTConfig(**{**sft, **config.extra_args}),
                train_dataset=train_ds,
                eval_dataset=valid_ds,
                processing_class=tok,
                peft_config=peft_config,
                callbacks=[bridge],
            )
        else:
            from trl import DPOConfig, DPOTrainer

            trainer = _safe_checkpoints(DPOTrainer)(
                model=model,
                args=DPOConfig(**{**common, "beta": config.dpo_beta, **config.extra_args}),
                train_dataset=train_ds,
                eval_dataset=valid_ds,
                processing_class=tok,
                peft_config=peft_config,
                callbacks=[bridge],
            )
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)  # progress goes to the Reporter, not stdout
        batches = math.ceil(len(trainer.train_dataset) / spec.batch_size)  # after packing, if any
        bridge.steps_per_epoch = max(math.ceil(batches / spec.gradient_accumulation_steps), 1)
        resume = str(ctx.resume_from) if ctx.resume_from is not None else None
        trainer.train(resume_from_checkpoint=resume)
        state = trainer.state

        metrics: dict[str, float] = {}
        if bridge.losses:
            metrics["train_loss"] = sum(bridge.losses) / len(bridge.losses)
        if bridge.last_eval is not None:
            metrics.update(valid_loss=bridge.last_eval.loss, valid_token_accuracy=bridge.last_eval.token_accuracy)
        adapter_dir = None
        if bridge.outcome == "completed":
            adapter_dir = ctx.output_dir / "adapter"
            with atomic_dir(adapter_dir) as tmp:
                trainer.model.save_pretrained(str(tmp), safe_serialization=True)
                write_metadata(tmp, ctx, "trl", config, {**metrics, "steps": state.global_step})
        return TrainingResult(
            bridge.outcome,
            state.global_step,
            state.max_steps,
            int(state.num_input_tokens_seen),
            adapter_dir,
            metrics,
        )


def _safe_checkpoints(trainer_class: type) -> type:
    """`trainer_class` writing its resume state as safetensors + JSON instead of torch.save pickles."""
    import os

    from tunery_trainer.backends import statefiles

    class SafeCheckpoints(trainer_class):  # type: ignore[misc, valid-type]
        def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
            if self.args.should_save:
                statefiles.save_optimizer(Path(output_dir), self.optimizer)
                statefiles.save_scheduler(Path(output_dir), self.lr_scheduler)

        def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
            if checkpoint is None or not (Path(checkpoint) / "optimizer.safetensors").is_file():
                return super()._load_optimizer_and_scheduler(checkpoint)
            state, groups = statefiles.read_optimizer(Path(checkpoint))
            self.optimizer.load_state_dict({"state": state, "param_groups": groups})
            statefiles.load_scheduler(Path(checkpoint), self.lr_scheduler)

        def _save_rng_state(self, output_dir: str) -> None:
            Path(output_dir).mkdir(parents=True, exist_ok=True)
            statefiles.save_rng(Path(output_dir), f"rng_state_{self.args.process_index}")

        def _load_rng_state(self, checkpoint: str | None) -> None:
            stem = f"rng_state_{self.args.process_index}"
            if checkpoint is None or not (Path(checkpoint) / f"{stem}.safetensors").is_file():
                return super()._load_rng_state(checkpoint)
            statefiles.load_rng(Path(checkpoint), stem)

        def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
            super()._save(output_dir, state_dict)
            out = output_dir if output_dir is not None else self.args.output_dir
            pickled = os.path.join(out, "training_args.bin")
            if self.args.should_save and os.path.exists(pickled):
                os.remove(pickled)
                with open(os.path.join(out, "training_args.json"), "w") as f:
                    f.write(self.args.to_json_string())

    SafeCheckpoints.__name__ = SafeCheckpoints.__qualname__ = f"Tunery{trainer_class.__name__}"
    return SafeCheckpoints


def _preference_only(examples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    bad = next((i for i, e in enumerate(examples) if "preferred_output" not in e), None)
    if bad is not None:
        raise InvalidArgument(
            f"example {bad + 1} is not a preference example; DPO needs input/preferred_output/non_preferred_output",
            code="invalid_example_format",
            field="training_file",
        )
    return examples
