"""The `peft` backend: a plain PyTorch loop over a PEFT LoRA model, built for throughput on small machines.

Where TRL's SFTTrainer spends CPU time that this loop does not:
- padding: each batch is one row without padding (position ids restart per example);
- attention across examples: one causal SDPA call per example instead of a masked call over the whole packed row,
  whose cost grows with the square of the row (30-40% of a layer's time for 2,400-token rows on SmolLM2);
- the vocabulary head on untrained tokens: the 49k-wide projection is a fifth of a 135M model's FLOPs; only
  trained positions are projected, in chunks, with the frozen head's gradient computed in the same pass (so the
  [tokens, vocab] logits never exist at once);
- gradient checkpointing (TRL's default): activations are kept instead, and a batch is split into passes of at
  most `max_tokens_per_forward` tokens so their memory stays bounded (same gradient).
Frozen weights are fp32 on CPUs (without AMX/AVX512-BF16, bf16 matmuls are 4-50x slower, measured on two CPUs
here) and bf16 on GPUs (`base_dtype`); LoRA weights and optimizer state are always fp32.
Checkpoints hold no pickle: adapter, optimizer tensors and RNG state as safetensors, the rest as JSON.

Several processes (torchrun; see tunery_trainer.launch): every rank keeps the whole model, takes every world-th
example of each batch, and the LoRA gradients are summed across ranks before each optimizer step, normalised by
the trained tokens of the whole batch, so the update equals the single-process one (data parallelism, as DDP).
With `fsdp`, the model is sharded instead (FSDP2 `fully_shard` per decoder layer and at the root): each rank holds
1/world of every weight and gathers a layer only while it runs; ranks run the same number of passes (a rank short
of examples runs an empty one), only rank 0 reads the weights (the others start on the meta device and receive
their shards), and checkpoints gather the LoRA weights and optimizer state onto rank 0.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import logging
import math
import os
import random
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from tunery.errors import FailedPrecondition, InvalidArgument
from tunery_trainer.backends import statefiles
from tunery_trainer.backends.base import (
    CheckpointInfo,
    Method,
    Outcome,
    StepMetrics,
    TrainingContext,
    TrainingResult,
    ValidationMetrics,
)
from tunery_trainer.data import IGNORE_INDEX, Tokenized, collate_padded, collate_padding_free, encode_sft

log = logging.getLogger("tunery.trainer.peft")
SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup")
SEGMENTED_ATTENTION = "tunery_segmented_sdpa"
STATE_FILE = "trainer_state.json"


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


# ---- attention within each packed example ----


def _segmented_sdpa(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Causal SDPA per example of a packed row (what flash-attention's varlen kernel does on GPUs).

    Cost is the sum of squared example lengths instead of the squared row length; no mask is built at all.
    """
    bounds: list[int] | None = kwargs.get("tunery_segments")
    groups = getattr(module, "num_key_value_groups", 1)
    if groups > 1:
        key = key.repeat_interleave(groups, dim=1)
        value = value.repeat_interleave(groups, dim=1)
    if bounds is None:  # one sequence per row, no padding
        bounds = [0, query.shape[2]]
    outs = [
        F.scaled_dot_product_attention(
            query[:, :, a:b], key[:, :, a:b], value[:, :, a:b], dropout_p=dropout, scale=scaling, is_causal=True
        )
        for a, b in itertools.pairwise(bounds)
    ]
    out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)
    return out.transpose(1, 2).contiguous(), None


def _register_attention() -> None:
    from transformers import AttentionInterface

    AttentionInterface.register(SEGMENTED_ATTENTION, _segmented_sdpa)


def segment_bounds(position_ids: torch.Tensor) -> list[int]:
    """Start offsets of the examples in a packed row (position id 0), plus the row length."""
    starts = (position_ids[0] == 0).nonzero().flatten().tolist()
    return [*starts, position_ids.shape[1]]


# ---- loss through a frozen vocabulary projection, in chunks ----


class _FrozenHeadCrossEntropy(torch.autograd.Function):
    """Summed cross-entropy of `hidden @ weight.T` against `targets`, never holding all [tokens, vocab] logits.

    The head is frozen (LoRA does not train it), so the only gradient is d(hidden) = (softmax - onehot) @ weight;
    it is computed chunk by chunk in the forward pass and kept (tokens x hidden, small), which costs the same
    FLOPs as autograd's forward + backward but a few hundred MB instead of several GB for a 49k vocabulary.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        w = weight.to(hidden.dtype)
        grad = torch.empty_like(hidden)
        loss = torch.zeros((), dtype=torch.float32, device=hidden.device)
        correct = torch.zeros((), dtype=torch.long, device=hidden.device)
        for i in range(0, hidden.shape[0], chunk):
            logits = (hidden[i : i + chunk] @ w.T).float()
            t = targets[i : i + chunk]
            rows = torch.arange(t.shape[0], device=t.device)
            lse = torch.logsumexp(logits, dim=-1)
            loss += (lse - logits[rows, t]).sum()
            correct += (logits.argmax(-1) == t).sum()
            probs = logits.sub_(lse[:, None]).exp_()
            probs[rows, t] -= 1.0
            grad[i : i + chunk] = probs.to(w.dtype) @ w
        ctx.save_for_backward(grad)
        ctx.mark_non_differentiable(correct)
        return loss, correct

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor, _grad_correct: Any) -> tuple[Any, ...]:
        (grad,) = ctx.saved_tensors
        return grad * grad_loss.to(grad.dtype), None, None, None


def head_loss(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed cross-entropy, correct argmax count) of the trained positions; chunks of ~256 MB of logits."""
    chunk = chunk or max(64, (1 << 26) // weight.shape[0])
    if not hidden.requires_grad:  # evaluation: no gradient to prepare
        loss = torch.zeros((), dtype=torch.float32, device=hidden.device)
        correct = torch.zeros((), dtype=torch.long, device=hidden.device)
        w = weight.to(hidden.dtype)
        for i in range(0, hidden.shape[0], chunk):
            logits = (hidden[i : i + chunk] @ w.T).float()
            t = targets[i : i + chunk]
            loss += F.cross_entropy(logits, t, reduction="sum")
            correct += (logits.argmax(-1) == t).sum()
        return loss, correct
    loss, correct = _FrozenHeadCrossEntropy.apply(hidden, weight, targets, chunk)
    return loss, correct


# ---- helpers shared with the trl backend ----


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


def _encode(ctx: TrainingContext, tokenizer: Any) -> tuple[list[Tokenized], list[Tokenized]]:
    train = encode_sft(tokenizer, ctx.train_examples, ctx.spec.max_seq_length)
    valid = encode_sft(tokenizer, ctx.validation_examples, ctx.spec.max_seq_length)
    if not train.examples:
        raise InvalidArgument(
            f"no training example has a trained token ({train.dropped} dropped: every assistant weight is 0 or "
            f"max_seq_length {ctx.spec.max_seq_length} cuts off every answer)",
            code="nothing_to_train",
            field="training_file",
        )
    return train.examples, valid.examples


# ---- the backend ----


class PeftBackend:
    name: ClassVar[str] = "peft"
    distributed: ClassVar[bool] = True
    description: ClassVar[str] = (
        "Plain PyTorch loop over a PEFT LoRA model: padding-free batches with per-example attention, vocabulary "
        "projection only on trained tokens; fastest on CPU."
    )
    methods: ClassVar[tuple[Method, ...]] = ("sft",)
    config_class: ClassVar[type] = PeftBackendConfig

    def train(self, ctx: TrainingContext, config: PeftBackendConfig | None = None) -> TrainingResult:
        config = config or PeftBackendConfig()
        if ctx.spec.method not in self.methods:
            raise InvalidArgument(
                f"the peft backend trains {', '.join(self.methods)} only, not {ctx.spec.method}; use the trl backend",
                code="unsupported_method",
                field="method",
            )
        threads = torch.get_num_threads()
        if config.num_threads:
            torch.set_num_threads(config.num_threads)
        try:
            return _Run(ctx, config).run()
        finally:
            torch.set_num_threads(threads)


class _Run:
    """One training run: state that a checkpoint captures lives here."""

    def __init__(self, ctx: TrainingContext, config: PeftBackendConfig) -> None:
        from transformers import AutoTokenizer

        self.ctx, self.cfg, spec = ctx, config, ctx.spec
        self.rank, self.world = 0, 1
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            self.rank, self.world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        if config.device == "auto":
            self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        else:
            self.device = torch.device(config.device)
        if self.device.type == "cuda" and self.world > 1 and self.device.index is None:
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", self.rank)))
        self.tokenizer = AutoTokenizer.from_pretrained(str(ctx.model_dir))
        self.train_set, self.valid_set = _encode(ctx, self.tokenizer)
        self.lengths = [len(e.input_ids) for e in self.train_set]
        self.batches_per_epoch = math.ceil(len(self.train_set) / spec.batch_size)
        self.steps_per_epoch = math.ceil(self.batches_per_epoch / spec.gradient_accumulation_steps)
        self.total_steps = self.steps_per_epoch * spec.n_epochs
        self.step = 0
        self.trained_tokens = 0  # all tokens processed, as OpenAI counts trained_tokens
        self.loss_sum = 0.0
        self.valid: ValidationMetrics | None = None
        self._epoch_cache: tuple[int, list[list[int]]] | None = None

        random.seed(spec.seed)
        torch.manual_seed(spec.seed)  # LoRA init and dropout
        self.fsdp = config.fsdp and self.world > 1
        # An example cannot be split across passes: if the longest one's activations would not fit, recompute them.
        self._per_token, self._per_token_ckpt, self._available = self._memory_plan()
        self.checkpointing = config.grad_checkpointing or max(self.lengths) * self._per_token > self._available // 2
        if self.checkpointing and not config.grad_checkpointing:
            log.warning(
                "gradient checkpointing on: the longest example (%d tokens) needs ~%.1f GB of activations, %.1f GB "
                "available",
                max(self.lengths),
                max(self.lengths) * self._per_token / 1e9,
                self._available / 1e9,
            )
        # Under FSDP only rank 0 reads the weights; the others build the model on the meta device (no memory)
        # and receive their shards from rank 0 after sharding: one copy of the base model in host memory, not N.
        self.model = self._load_model(on_meta=self.fsdp and self.rank != 0)
        if self.fsdp:
            if ctx.resume_from is not None and self.rank == 0:  # into the whole model, before it is cut into shards
                self._load_adapter(ctx.resume_from)
            self._shard()
            self._decoder, self._head = None, None
        else:
            if self.world > 1:
                for p in self.model.parameters():  # the same starting adapter on every rank
                    if p.requires_grad:
                        torch.distributed.broadcast(p.data, src=0)
            self._decoder, self._head = self._split_head()
        if self.world > 1:
            torch.manual_seed(spec.seed * 1009 + self.rank)  # each rank its own dropout masks
        self._trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.token_budget = config.max_tokens_per_forward or self._auto_token_budget()
        self.optimizer = torch.optim.AdamW(self._trainable, lr=spec.learning_rate, weight_decay=spec.weight_decay)
        from transformers import get_scheduler

        self.scheduler = get_scheduler(
            config.lr_scheduler,
            self.optimizer,
            num_warmup_steps=math.ceil(spec.warmup_ratio * self.total_steps),
            num_training_steps=self.total_steps,
        )
        if ctx.resume_from is not None:
            self._load_checkpoint(ctx.resume_from)

    # -- setup --

    def _load_model(self, on_meta: bool = False) -> Any:
        from peft import LoraConfig, get_peft_model
        from transformers import AutoConfig, AutoModelForCausalLM

        attn = "sdpa"
        if self.cfg.padding_free:
            _register_attention()
            attn = SEGMENTED_ATTENTION
        dtype = self._base_dtype()
        model: Any
        if on_meta:
            config = AutoConfig.from_pretrained(str(self.ctx.model_dir))
            with torch.device("meta"):
                model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=attn)
        else:
            model = AutoModelForCausalLM.from_pretrained(str(self.ctx.model_dir), dtype=dtype, attn_implementation=attn)
        model.config.use_cache = False
        if self.checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        lora = self.ctx.spec.lora
        peft_config = LoraConfig(
            r=lora.rank,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            target_modules=lora_targets(model, lora.target_modules),
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, peft_config)
        return model if self.fsdp else model.to(self.device)  # FSDP moves each shard to the device itself

    def _base_dtype(self) -> torch.dtype:
        if self.cfg.base_dtype == "bfloat16" or (self.cfg.base_dtype == "auto" and self.device.type == "cuda"):
            return torch.bfloat16
        return torch.float32

    def _shard(self) -> None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        # rank 0's whole weights (LoRA included), kept only until they are scattered below
        full = self.model.state_dict() if self.rank == 0 else {}

        mesh = init_device_mesh(self.device.type, (self.world,))
        decoder = getattr(self.model.get_base_model(), "model", None)
        layers = getattr(decoder, "layers", None)
        if layers is None:
            raise InvalidArgument(
                "fsdp needs a decoder with a `layers` list (Llama, Mistral, Qwen, Gemma, ...); this model has none",
                code="fsdp_unsupported_model",
                field="backend_config.fsdp",
            )
        for layer in layers:
            fully_shard(layer, mesh=mesh)
        fully_shard(self.model, mesh=mesh)
        if self.rank != 0:
            self.model.to_empty(device=self.device)  # room for this rank's shards, filled from rank 0 next
        set_model_state_dict(
            self.model, full, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True, strict=False)
        )
        del full
        for b in self.model.buffers():  # not in the state dict (rotary frequencies, ...): rank 0's too
            torch.distributed.broadcast(b.data, src=0)

    def _full_trainable(self) -> dict[str, torch.Tensor]:
        """LoRA weights by name, whole and on the CPU (under FSDP every rank must call this: it gathers)."""
        out = {}
        for name, p in self.model.named_parameters():
            if p.requires_grad:
                t = p.detach()
                out[name] = (t.full_tensor() if hasattr(t, "full_tensor") else t).cpu()
        return out

    def _split_head(self) -> tuple[Any, torch.Tensor | None]:
        """(decoder, frozen head weight) when logits are exactly `decoder(x) @ head.T`, else (None, None).

        Checked numerically on a few tokens rather than trusted per architecture: models that scale or soft-cap
        their logits (Gemma, Cohere, ...) fail the check and keep the ordinary `logits_to_keep` path.
        """
        base = self.model.get_base_model()
        head, decoder = getattr(base, "lm_head", None), getattr(base, "model", None)
        if not isinstance(head, torch.nn.Linear) or head.bias is not None or head.weight.requires_grad:
            return None, None
        if decoder is None:
            return None, None
        ids = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8]], device=self.device)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                want = self.model(input_ids=ids, use_cache=False).logits.float()
                got = (decoder(input_ids=ids, use_cache=False).last_hidden_state @ head.weight.T).float()
        except Exception:
            return None, None
        finally:
            self.model.train(was_training)
        if want.shape != got.shape or not torch.allclose(want, got, atol=1e-4, rtol=1e-4):
            return None, None
        return decoder, head.weight

    def _memory_plan(self) -> tuple[int, int, int]:
        """(activation bytes per token kept for backward, the same with checkpointing, memory available to a rank).

        Per token and layer, autograd keeps about 20 hidden-wide and 8 MLP-wide fp32 vectors (LoRA inputs, dropout,
        norms, attention, the MLP); measured 3.1 MB/token on SmolLM2-135M (30 x 576, MLP 1536), estimated 2.9.
        With checkpointing, one layer's worth plus each layer's input.
        """
        from transformers import AutoConfig

        c = AutoConfig.from_pretrained(str(self.ctx.model_dir))
        c = getattr(c, "text_config", None) or c
        layers, hidden = int(c.num_hidden_layers), int(c.hidden_size)
        width = int(getattr(c, "intermediate_size", 0) or 4 * hidden)
        per_layer = (20 * hidden + 8 * width) * 4
        if self.device.type == "cuda":
            available = torch.cuda.mem_get_info(self.device)[0]
        else:
            import psutil

            available = psutil.virtual_memory().available // int(os.environ.get("LOCAL_WORLD_SIZE", self.world))
        return layers * per_layer, per_layer + layers * hidden * 8, int(available)

    def _auto_token_budget(self) -> int:
        """Tokens per forward pass whose saved activations fit a quarter of the memory available at start."""
        per_token = self._per_token_ckpt if self.checkpointing else self._per_token
        return int(min(max(self._available // 4 // per_token, 256), 4096))

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if not self.cfg.autocast_bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    # -- data --

    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        """Batches of one epoch: a shuffle seeded by seed + epoch, so a resumed run replays it exactly."""
        if self._epoch_cache is None or self._epoch_cache[0] != epoch:
            from tunery_trainer.data import shuffled_batches

            group = self.cfg.group_by_length and not self.cfg.padding_free
            b = shuffled_batches(self.lengths, self.ctx.spec.batch_size, self.ctx.spec.seed + epoch, group)
            self._epoch_cache = (epoch, b)
        return self._epoch_cache[1]

    def _split(self, items: list[Tokenized]) -> list[list[Tokenized]]:
        """Consecutive groups of whole examples within the token budget (padded rows count at their longest)."""
        budget, widest = self.token_budget, 0
        parts: list[list[Tokenized]] = []
        cur: list[Tokenized] = []
        for e in items:
            n = len(e.input_ids)
            size = (len(cur) + 1) * max(widest, n) if not self.cfg.padding_free else widest + n
            if cur and size > budget:
                parts.append(cur)
                cur, widest = [], 0
            cur.append(e)
            widest = widest + n if self.cfg.padding_free else max(widest, n)
        parts.append(cur)
        return parts

    def _collate(self, items: list[Tokenized]) -> dict[str, Any]:
        if self.cfg.padding_free:
            batch: dict[str, Any] = collate_padding_free(items)
        else:
            pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
            batch = collate_padded(items, pad)
        return {k: v.to(self.device) for k, v in batch.items()}

    def _loss_sums(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Summed token cross-entropy and correct argmax count over the trained positions of one micro-batch.

        Only trained positions are projected onto the vocabulary (the head is a fifth of a 135M model's FLOPs,
        wasted on prompt tokens), through the chunked frozen-head loss when the architecture allows.
        """
        labels = batch["labels"]
        targets = labels[:, 1:]
        keep = torch.zeros_like(labels, dtype=torch.bool)
        keep[:, :-1] = targets != IGNORE_INDEX
        gold = targets[targets != IGNORE_INDEX]
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        if self.cfg.padding_free:
            inputs["tunery_segments"] = segment_bounds(batch["position_ids"])
        with self._autocast():
            if self._decoder is not None and self._head is not None:
                hidden = self._decoder(**inputs, use_cache=False).last_hidden_state
                loss, correct = head_loss(hidden[keep], self._head, gold)
                return loss, correct, int(gold.numel())
            out = self.model(**inputs, use_cache=False, logits_to_keep=keep)
        logits = out.logits.float().reshape(-1, out.logits.shape[-1])
        loss = F.cross_entropy(logits, gold, reduction="sum")
        correct = (logits.detach().argmax(-1) == gold).sum()
        return loss, correct, int(gold.numel())

    # -- checkpoints --

    def _save_checkpoint(self) -> Path:
        path = self.ctx.output_dir / "checkpoints" / f"step-{self.step:06d}"
        adapter, opt_tensors = None, None
        if self.fsdp:  # gathered on every rank (a collective), written by rank 0
            adapter = self._full_trainable()
            opt_tensors = self._full_optimizer_state()
        if self.rank == 0:
            self._write_checkpoint(path, adapter, opt_tensors)
        if self.world > 1:
            self._barrier()
        return path

    def _full_optimizer_state(self) -> dict[str, torch.Tensor]:
        """`<param index>.<name>` -> whole tensor on the CPU: the checkpoint format, gathered from the shards."""
        out = {}
        for i, p in enumerate(self._trainable):
            for k, v in self.optimizer.state.get(p, {}).items():
                out[f"{i}.{k}"] = (v.full_tensor() if hasattr(v, "full_tensor") else v).detach().cpu().contiguous()
        return out

    def _write_checkpoint(
        self, path: Path, adapter: dict[str, torch.Tensor] | None, opt_tensors: dict[str, torch.Tensor] | None
    ) -> None:
        with atomic_dir(path) as tmp:
            self.model.save_pretrained(str(tmp), safe_serialization=True, state_dict=adapter)
            statefiles.save_optimizer(tmp, self.optimizer, opt_tensors)
            statefiles.save_scheduler(tmp, self.scheduler)
            statefiles.save_rng(tmp, "rng")
            epoch, in_epoch = divmod(self.step, self.steps_per_epoch)
            state = {
                "backend": "peft",
                "step": self.step,
                "total_steps": self.total_steps,
                "steps_per_epoch": self.steps_per_epoch,
                "epoch": self.step / self.steps_per_epoch,
                # the next batch: epoch `epoch` (shuffled with seed + epoch), batch index `batch`
                "data": {
                    "epoch": epoch,
                    "batch": in_epoch * self.ctx.spec.gradient_accumulation_steps,
                    "seed": self.ctx.spec.seed,
                    "examples": len(self.train_set),
                },
                "trained_tokens": self.trained_tokens,
                "loss_sum": self.loss_sum,
                "token_budget": self.token_budget,
                "valid": asdict(self.valid) if self.valid else None,
                "world_size": self.world,
            }
            (tmp / STATE_FILE).write_text(json.dumps(state, indent=2))
        self.ctx.reporter.on_checkpoint(CheckpointInfo(self.step, self.step / self.steps_per_epoch, path))

    def _load_adapter(self, path: Path) -> None:
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        set_peft_model_state_dict(self.model, load_file(str(path / "adapter_model.safetensors")))

    def _load_checkpoint(self, path: Path) -> None:

        state_file = path / STATE_FILE
        if not state_file.exists():
            raise FailedPrecondition(
                f"{path} is not a peft backend checkpoint (no {STATE_FILE})", code="bad_checkpoint"
            )
        state = json.loads(state_file.read_text())
        mine = (self.total_steps, len(self.train_set), self.ctx.spec.seed)
        theirs = (state.get("total_steps"), state["data"].get("examples"), state["data"].get("seed"))
        if state.get("backend") != "peft" or mine != theirs:
            raise FailedPrecondition(
                f"checkpoint {path} belongs to another run (total steps, examples, seed {theirs}; this run {mine})",
                code="bad_checkpoint",
            )
        if not self.fsdp:  # under FSDP the adapter went in before sharding
            self._load_adapter(path)
        opt_state, groups = statefiles.read_optimizer(path)
        if self.fsdp:  # cut each whole state tensor like its parameter
            from torch.distributed.tensor import distribute_tensor

            self.optimizer.load_state_dict({"state": {}, "param_groups": groups})
            for i, st in opt_state.items():
                p = self._trainable[i]
                self.optimizer.state[p] = {
                    k: distribute_tensor(v.to(p.device, p.dtype), p.device_mesh, p.placements)
                    if v.shape == p.shape
                    else v
                    for k, v in st.items()
                }
        else:
            self.optimizer.load_state_dict({"state": opt_state, "param_groups": groups})
        statefiles.load_scheduler(path, self.scheduler)
        statefiles.load_rng(path, "rng")
        if self.rank > 0:  # the checkpoint holds rank 0's generator; the others draw their own masks again
            torch.manual_seed(self.ctx.spec.seed * 1009 + self.rank + 7919 * int(state["step"]))
        self.step = int(state["step"])
        self.trained_tokens = int(state["trained_tokens"])
        self.loss_sum = float(state["loss_sum"])
        if not self.cfg.max_tokens_per_forward and state.get("token_budget"):
            # The same passes as before the interruption: dropout masks and sums then match bit for bit.
            self.token_budget = int(state["token_budget"])
        self.valid = ValidationMetrics(**state["valid"]) if state.get("valid") else None

    # -- evaluation --

    @torch.no_grad()
    def _evaluate(self) -> ValidationMetrics:
        self.model.eval()
        loss_sum, correct, count = 0.0, 0, 0
        bs = self.ctx.spec.batch_size
        mine = self.valid_set[self.rank :: self.world]
        passes = [self._collate(part) for i in range(0, len(mine), bs) for part in self._split(mine[i : i + bs])]
        for m in passes:
            loss, ok, n = self._loss_sums(m)
            loss_sum, correct, count = loss_sum + float(loss), correct + int(ok), count + n
        for m in self._empty_passes(len(passes)):
            self._loss_sums(m)
        if self.world > 1:
            loss_sum, correct, count = self._sum_across_ranks(loss_sum, correct, count)
            correct, count = int(correct), int(count)
        self.model.train()
        self.valid = ValidationMetrics(self.step, loss_sum / max(count, 1), correct / max(count, 1))
        self.ctx.reporter.on_validation(self.valid)
        return self.valid

    # -- the loop --

    def _train_step(self) -> tuple[float, int, float]:
        """One optimizer step; (mean token loss, tokens processed, learning rate used)."""
        spec = self.ctx.spec
        epoch, in_epoch = divmod(self.step, self.steps_per_epoch)
        ga = spec.gradient_accumulation_steps
        # With several ranks each takes every world-th example of every batch of the step.
        idx = [b[self.rank :: self.world] for b in self._epoch_batches(epoch)[in_epoch * ga : (in_epoch + 1) * ga]]
        micro = [self._collate(part) for b in idx if b for part in self._split([self.train_set[i] for i in b])]
        # Normalise by the trained tokens of the whole step, so accumulation equals one big batch.
        n_trained = sum(int((m["labels"][:, 1:] != IGNORE_INDEX).sum()) for m in micro)
        tokens = sum(len(self.train_set[i].input_ids) for b in idx for i in b)
        if self.world > 1:
            n_trained_all, _ = self._sum_across_ranks(n_trained, 0)
            n_trained = int(n_trained_all)
        n_trained = max(n_trained, 1)
        # FSDP averages gradients over the ranks; the sum is wanted (normalised by the whole step's tokens above).
        scale = self.world / n_trained if self.fsdp else 1 / n_trained
        total = 0.0
        for m in micro:
            loss, _, _ = self._loss_sums(m)
            (loss * scale).backward()
            total += float(loss.detach())
        for m in self._empty_passes(len(micro)):
            loss, _, _ = self._loss_sums(m)
            (loss * 0.0).backward()
        if self.world > 1:
            if not self.fsdp:  # FSDP reduced them in the backward pass
                self._sum_gradients()
            total, tokens_all = self._sum_across_ranks(total, tokens)
            tokens = int(tokens_all)
        if self.cfg.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self._trainable, self.cfg.max_grad_norm)
        lr = float(self.optimizer.param_groups[0]["lr"])
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return total / n_trained, tokens, lr

    # -- several ranks --

    def _sum_across_ranks(self, *values: float) -> list[float]:
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(t)
        return t.tolist()

    def _sum_gradients(self) -> None:
        """All-reduce (sum) the LoRA gradients in one flat buffer; a rank without examples adds zeros."""
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self._trainable]
        flat = torch.cat([g.reshape(-1) for g in grads])
        torch.distributed.all_reduce(flat)
        offset = 0
        for p in self._trainable:
            n = p.numel()
            p.grad = flat[offset : offset + n].view_as(p).clone()
            offset += n

    def _empty_passes(self, mine: int) -> list[dict[str, Any]]:
        """Under FSDP every rank must run as many passes as the busiest one (each pass gathers every layer):
        passes over one short example whose loss is then multiplied by 0, for the ranks with fewer."""
        if not self.fsdp:
            return []
        t = torch.tensor([mine], dtype=torch.int64, device=self.device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        short = min(self.train_set, key=lambda e: len(e.input_ids))
        return [self._collate([short]) for _ in range(int(t.item()) - mine)]

    def _barrier(self) -> None:
        torch.distributed.barrier()

    def run(self) -> TrainingResult:
        ctx, spec, rep = self.ctx, self.ctx.spec, self.ctx.reporter
        rep.on_start(self.total_steps, self.step)
        self.model.train()
        outcome: Outcome = "completed"
        window_loss, window_tokens, window_time, window_n = 0.0, 0, 0.0, 0
        step_times: list[float] = []
        while self.step < self.total_steps:
            t0 = time.perf_counter()
            loss, tokens, lr = self._train_step()
            dt = time.perf_counter() - t0
            self.step += 1
            self.trained_tokens += tokens
            self.loss_sum += loss
            step_times = [*step_times[-19:], dt]
            window_loss, window_tokens, window_time, window_n = (
                window_loss + loss,
                window_tokens + tokens,
                window_time + dt,
                window_n + 1,
            )
            if window_n >= max(spec.logging_steps, 1) or self.step == self.total_steps:
                eta = (self.total_steps - self.step) * sum(step_times) / len(step_times)
                rep.on_step(
                    StepMetrics(
                        step=self.step,
                        total_steps=self.total_steps,
                        epoch=self.step / self.steps_per_epoch,
                        loss=window_loss / window_n,
                        learning_rate=lr,
                        tokens=window_tokens,  # since the previous report
                        tokens_per_second=window_tokens / window_time,
                        eta_seconds=eta,
                    )
                )
                window_loss, window_tokens, window_time, window_n = 0.0, 0, 0.0, 0
            epoch_end = self.step % self.steps_per_epoch == 0
            if self.valid_set and (epoch_end or (spec.eval_every_steps and self.step % spec.eval_every_steps == 0)):
                self._evaluate()
            saved = epoch_end or bool(spec.checkpoint_every_steps and self.step % spec.checkpoint_every_steps == 0)
            if saved:
                self._save_checkpoint()
            control = rep.control()
            if control == "cancel":
                outcome = "cancelled"
                break
            if control == "pause":
                if not saved:
                    self._save_checkpoint()
                outcome = "paused"
                break

        metrics: dict[str, float] = {"train_loss": self.loss_sum / max(self.step, 1)}
        if self.valid is not None:
            metrics.update(valid_loss=self.valid.loss, valid_token_accuracy=self.valid.token_accuracy)
        adapter_dir = None
        if outcome == "completed":
            adapter_dir = ctx.output_dir / "adapter"
            full = self._full_trainable() if self.fsdp else None
            if self.rank == 0:
                with atomic_dir(adapter_dir) as tmp:
                    self.model.save_pretrained(str(tmp), safe_serialization=True, state_dict=full)
                    meta = {**metrics, "steps": self.step, "processes": self.world}
                    effective = dataclasses.replace(self.cfg, grad_checkpointing=self.checkpointing)
                    write_metadata(tmp, ctx, "peft", effective, meta)
            if self.world > 1:
                self._barrier()
        return TrainingResult(outcome, self.step, self.total_steps, self.trained_tokens, adapter_dir, metrics)

