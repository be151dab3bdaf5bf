"""The trl backend's config; `extra_args` passes more SFTConfig/DPOConfig fields through, checked against TRL's."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import cache
from typing import Any

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
def trl_fields() -> dict[str, frozenset[str]]:
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
        known = trl_fields()["sft"] | trl_fields()["dpo"]
        unknown = sorted(set(self.extra_args) - known)
        if unknown:
            raise ValueError(
                f"extra_args has keys that are neither SFTConfig nor DPOConfig fields: {', '.join(unknown)}"
            )
