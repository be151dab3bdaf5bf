"""The contract between the trainer worker and a training backend plugin.

A backend gets a `TrainingContext` (a plain model folder, examples in OpenAI's format, resolved hyperparameters,
where to write, where to resume from) and reports through `Reporter`. It must:
- train LoRA adapters with the base model's chat template, loss on assistant tokens only (honouring `weight: 0`),
  the end-of-turn/EOS token trained;
- write checkpoints (adapter as safetensors, never pickle; optimizer, scheduler, RNG and data position) every
  `checkpoint_every_steps` steps and at each epoch end, and resume from one with identical step numbering;
- ask `reporter.control()` between optimizer steps and stop promptly on "cancel" (keeping checkpoints) or "pause"
  (writing a checkpoint first);
- write the final adapter (safetensors + adapter_config.json + tunery_metadata.json) into `ctx.output_dir/"adapter"`.

A backend that sets `distributed = True` can also run as one rank of a `torch.distributed` process group (the worker
starts the ranks with torchrun when it has more than one process per job; see tunery_trainer.launch): the group is
initialised before `train` is called, every rank gets the same context, and `ctx.reporter` is a reporter whose
`control()` answers the same on every rank (call it at the same points on all ranks). Only rank 0 may write
checkpoints and the adapter; the other ranks' reporter events are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

Method = Literal["sft", "dpo"]
Control = Literal["continue", "cancel", "pause"]
Outcome = Literal["completed", "cancelled", "paused"]

DEFAULT_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True, slots=True)
class LoraSpec:
    rank: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: tuple[str, ...] = DEFAULT_TARGET_MODULES


@dataclass(frozen=True, slots=True)
class TrainSpec:
    """Resolved hyperparameters ("auto" already replaced by numbers)."""

    method: Method = "sft"
    n_epochs: int = 3
    batch_size: int = 4
    learning_rate: float = 2e-4
    gradient_accumulation_steps: int = 1
    max_seq_length: int = 2048
    seed: int = 0
    lora: LoraSpec = field(default_factory=LoraSpec)
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    # 0: only at each epoch end.
    checkpoint_every_steps: int = 0
    # 0: only at each epoch end (when there is validation data).
    eval_every_steps: int = 0
    # Log a step event every N optimizer steps.
    logging_steps: int = 1


@dataclass(frozen=True, slots=True)
class StepMetrics:
    step: int  # 1-based optimizer step
    total_steps: int
    epoch: float  # fractional, e.g. 1.5 = half-way through the second epoch
    loss: float
    learning_rate: float
    tokens: int  # tokens processed in this step (all, not only trained)
    tokens_per_second: float
    eta_seconds: float


@dataclass(frozen=True, slots=True)
class CheckpointInfo:
    step: int
    epoch: float
    path: Path


@dataclass(frozen=True, slots=True)
class ValidationMetrics:
    step: int
    loss: float
    token_accuracy: float


class Reporter(Protocol):
    def on_start(self, total_steps: int, start_step: int) -> None: ...
    def on_step(self, m: StepMetrics) -> None: ...
    def on_checkpoint(self, c: CheckpointInfo) -> None: ...
    def on_validation(self, v: ValidationMetrics) -> None: ...
    def control(self) -> Control: ...


@dataclass(slots=True)
class TrainingContext:
    job_id: str
    model_dir: Path  # plain transformers folder: config.json, safetensors weights, tokenizer with chat template
    train_examples: list[dict[str, Any]]
    validation_examples: list[dict[str, Any]]
    spec: TrainSpec
    output_dir: Path  # checkpoints go to output_dir/"checkpoints"/"step-%06d", the adapter to output_dir/"adapter"
    reporter: Reporter
    resume_from: Path | None = None  # a checkpoint folder written by the same backend
    metadata: dict[str, Any] = field(default_factory=dict)  # base model, dataset versions, ...: into the adapter


@dataclass(slots=True)
class TrainingResult:
    outcome: Outcome
    steps: int
    total_steps: int
    trained_tokens: int
    adapter_dir: Path | None  # None unless completed
    metrics: dict[str, float] = field(default_factory=dict)  # train_loss, valid_loss, valid_token_accuracy


@runtime_checkable
class TrainerBackend(Protocol):
    """What a `tunery.trainer_backends` entry point must provide (a class or an instance)."""

    name: ClassVar[str]
    description: ClassVar[str]
    methods: ClassVar[tuple[Method, ...]]
    # A dataclass; every field has metadata={"help": "..."}; unknown keys are rejected before a job is queued.
    config_class: ClassVar[type]
    # Optional (default False): True when train() works as one rank of a torch.distributed group (see above).
    # distributed: ClassVar[bool]

    def train(self, ctx: TrainingContext, config: Any) -> TrainingResult: ...
