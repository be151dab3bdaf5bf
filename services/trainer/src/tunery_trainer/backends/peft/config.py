"""The peft backend's config: every field documented (its help is what `tunery backends` and the API show)."""

from __future__ import annotations

from dataclasses import dataclass, field

SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup")


@dataclass(frozen=True, slots=True)
class PeftBackendConfig:
    padding_free: bool = field(
        default=True,
        metadata={
            "help": "Pack each batch into one row without padding, attending within each example only. Same loss "
            "as padded batches, less compute; off: right-padded rows with an attention mask."
        },
    )
    autocast_bf16: bool = field(
        default=False,
        metadata={
            "help": "Run forward/backward under bfloat16 autocast (LoRA weights and optimizer stay fp32). A win on "
            "GPUs and on CPUs with AMX/AVX512-BF16; off by default because on AVX2-only CPUs bf16 matmuls are "
            "emulated and about 10x slower than fp32."
        },
    )
    num_threads: int = field(
        default=0,
        metadata={"help": "torch intra-op threads for this job; 0 leaves torch's default (one per core)."},
    )
    grad_checkpointing: bool = field(
        default=False,
        metadata={
            "help": "Recompute activations in the backward pass: less memory, about 30% slower. Turned on by itself "
            "when the longest training example's activations would not fit half the memory available."
        },
    )
    lr_scheduler: str = field(
        default="linear",
        metadata={"help": f"Learning-rate schedule after warmup, one of: {', '.join(SCHEDULERS)}."},
    )
    max_grad_norm: float = field(
        default=1.0, metadata={"help": "Clip the gradient norm to this before each optimizer step; 0 disables."}
    )
    group_by_length: bool = field(
        default=True,
        metadata={"help": "Without padding_free: batch examples of similar length together (less padding)."},
    )
    max_tokens_per_forward: int = field(
        default=0,
        metadata={
            "help": "Split each batch into forward/backward passes of at most this many tokens (whole examples; same "
            "gradient). Bounds activation memory: about 3 MB per token for a 135M model without grad_checkpointing. "
            "0: from the model's size and a quarter of the memory available at start (256-4096)."
        },
    )
    device: str = field(
        default="auto", metadata={"help": "Torch device to train on: auto (cuda when available, else cpu), cpu, cuda."}
    )
    base_dtype: str = field(
        default="auto",
        metadata={
            "help": "dtype of the frozen base weights: float32, bfloat16 (half the memory; what a 70B model on GPUs "
            "needs), or auto (bfloat16 on GPUs, float32 on CPUs). LoRA weights and optimizer state stay float32."
        },
    )
    fsdp: bool = field(
        default=False,
        metadata={
            "help": "With several processes per job: shard the base weights, LoRA weights and optimizer state across "
            "the processes (FSDP2, one unit per decoder layer) for models that do not fit one device; off: every "
            "process holds the whole model (data parallel). No effect in one process."
        },
    )

    def __post_init__(self) -> None:
        if self.lr_scheduler not in SCHEDULERS:
            raise ValueError(f"lr_scheduler {self.lr_scheduler!r} is not one of {', '.join(SCHEDULERS)}")
        if self.num_threads < 0:
            raise ValueError(f"num_threads must be >= 0, not {self.num_threads}")
        if self.max_tokens_per_forward < 0:
            raise ValueError(f"max_tokens_per_forward must be >= 0, not {self.max_tokens_per_forward}")
        if self.max_grad_norm < 0:
            raise ValueError(f"max_grad_norm must be >= 0, not {self.max_grad_norm}")
        if self.base_dtype not in ("auto", "float32", "bfloat16"):
            raise ValueError(f"base_dtype must be auto, float32 or bfloat16, not {self.base_dtype!r}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"device must be auto, cpu or cuda[:N], not {self.device!r}")
