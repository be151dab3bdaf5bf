"""Checks of a job spec that need nothing but the spec (and the base model's context): every mistake is an
InvalidArgument naming the field, raised before anything is stored. "auto" hyperparameters are resolved here."""

from __future__ import annotations

import math
import re

from tunery import hyperparams
from tunery.errors import InvalidArgument
from tunery.models import BaseModelSpec
from tunery_trainer.backends.registry import get_backend, parse_config
from tunery_trainer.domain import Hyperparameters, JobSpec, LoraSettings, ResolvedHyperparameters

SUFFIX_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
MODULE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
MAX_EPOCHS = 50
MAX_BATCH = 1024


def _num(v: float) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _bad(message: str, code: str, field: str) -> InvalidArgument:
    return InvalidArgument(message, code=code, field=field)


def check_static(spec: JobSpec, model: BaseModelSpec) -> int:
    """Backend, method, backend config, suffix and max_seq_length; returns the max_seq_length to train with."""
    backend = get_backend(spec.backend)
    if spec.method not in backend.methods:
        raise _bad(
            f"backend {backend.name!r} does not support method {spec.method}; it supports {', '.join(backend.methods)}",
            "unsupported_method",
            "method",
        )
    parse_config(backend, spec.backend_config)
    if spec.suffix and not SUFFIX_RE.match(spec.suffix):
        raise _bad(f"suffix {spec.suffix!r} must be 1-40 characters of a-z, 0-9 and '-'", "invalid_suffix", "suffix")
    max_len = spec.max_seq_length or min(2048, model.context_length or 2048)
    if spec.max_seq_length < 0 or (model.context_length and max_len > model.context_length):
        raise _bad(
            f"max_seq_length {spec.max_seq_length} is beyond {model.name}'s context of {model.context_length}",
            "invalid_max_seq_length",
            "max_seq_length",
        )
    return max_len


def check_validation_split(fraction: float) -> None:
    if not _num(fraction) or not 0 < fraction < 1:
        raise _bad(
            f"validation_split must be between 0 and 1 (exclusive), not {fraction}",
            "invalid_validation_split",
            "validation_split",
        )


def _in_range(h: Hyperparameters, name: str, lo: float, hi: float) -> None:
    v = getattr(h, name)
    if v is not None and (not _num(v) or not lo <= v <= hi):
        raise _bad(f"{name} must be between {lo:g} and {hi:g}, not {v}", f"invalid_{name}", f"hyperparameters.{name}")


def resolve_hyperparameters(h: Hyperparameters, n_examples: int) -> ResolvedHyperparameters:
    """Check what was given and fill in the rest ("auto") from the number of training examples."""
    _in_range(h, "n_epochs", 1, MAX_EPOCHS)
    _in_range(h, "batch_size", 1, MAX_BATCH)
    if h.learning_rate is not None and h.learning_rate_multiplier is not None:
        raise _bad(
            "give learning_rate or learning_rate_multiplier, not both",
            "conflicting_fields",
            "hyperparameters.learning_rate_multiplier",
        )
    for name in ("learning_rate", "learning_rate_multiplier"):
        v = getattr(h, name)
        if v is not None and (not _num(v) or v <= 0 or v > 1e3):
            raise _bad(
                f"{name} must be a positive finite number, not {v}", f"invalid_{name}", f"hyperparameters.{name}"
            )
    if h.learning_rate is not None and h.learning_rate >= 1:
        raise _bad(
            f"learning_rate {h.learning_rate} is far too large for LoRA (typical: 1e-5 to 1e-3)",
            "invalid_learning_rate",
            "hyperparameters.learning_rate",
        )
    _in_range(h, "gradient_accumulation_steps", 1, 1024)
    _in_range(h, "warmup_ratio", 0, 1)
    _in_range(h, "weight_decay", 0, 1)
    mult = h.learning_rate_multiplier
    return ResolvedHyperparameters(
        n_epochs=h.n_epochs if h.n_epochs is not None else hyperparams.auto_epochs(n_examples),
        batch_size=h.batch_size if h.batch_size is not None else hyperparams.auto_batch_size(n_examples),
        learning_rate=(h.learning_rate if h.learning_rate is not None else hyperparams.auto_learning_rate(mult or 1.0)),
        learning_rate_multiplier=mult if h.learning_rate is None else None,
        gradient_accumulation_steps=h.gradient_accumulation_steps or 1,
        warmup_ratio=h.warmup_ratio or 0.0,
        weight_decay=h.weight_decay or 0.0,
    )


def check_lora(lora: LoraSettings) -> None:
    if lora.rank is not None and not 1 <= lora.rank <= 1024:
        raise _bad(f"lora.rank must be between 1 and 1024, not {lora.rank}", "invalid_lora_rank", "lora.rank")
    if lora.alpha is not None and lora.alpha <= 0:
        raise _bad(f"lora.alpha must be positive, not {lora.alpha}", "invalid_lora_alpha", "lora.alpha")
    if lora.dropout is not None and not (_num(lora.dropout) and 0 <= lora.dropout < 1):
        raise _bad(f"lora.dropout must be in [0, 1), not {lora.dropout}", "invalid_lora_dropout", "lora.dropout")
    for i, m in enumerate(lora.target_modules):
        if not MODULE_RE.match(m):
            raise _bad(
                f"lora.target_modules[{i}] {m!r} is not a module name",
                "invalid_target_module",
                f"lora.target_modules[{i}]",
            )
