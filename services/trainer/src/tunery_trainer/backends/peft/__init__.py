"""The `peft` backend (entry point `tunery_trainer.backends.peft:PeftBackend`): a plain PyTorch loop over a PEFT LoRA
model, built for throughput on small machines.

Where TRL's SFTTrainer spends CPU time that this loop does not:
- padding: each batch is one row without padding (position ids restart per example);
- attention across examples: one causal SDPA call per example instead of a masked call over the whole packed row,
  whose cost grows with the square of the row (30-40% of a layer's time for 2,400-token rows on SmolLM2)
  (`attention`);
- the vocabulary head on untrained tokens: the 49k-wide projection is a fifth of a 135M model's FLOPs; only
  trained positions are projected, in chunks, with the frozen head's gradient computed in the same pass (so the
  [tokens, vocab] logits never exist at once) (`loss`);
- gradient checkpointing (TRL's default): activations are kept instead, and a batch is split into passes of at
  most `max_tokens_per_forward` tokens so their memory stays bounded (same gradient).
Frozen weights are fp32 on CPUs (without AMX/AVX512-BF16, bf16 matmuls are 4-50x slower, measured on two CPUs
here) and bf16 on GPUs (`base_dtype`); LoRA weights and optimizer state are always fp32 (`model`).
Checkpoints hold no pickle: adapter, optimizer tensors and RNG state as safetensors, the rest as JSON (`checkpoint`).

Several processes (torchrun; see tunery_trainer.launch): every rank keeps the whole model, takes every world-th
example of each batch, and the LoRA gradients are summed across ranks before each optimizer step, normalised by
the trained tokens of the whole batch, so the update equals the single-process one (data parallelism, as DDP).
With `fsdp`, the model is sharded instead (FSDP2 `fully_shard` per decoder layer and at the root): each rank holds
1/world of every weight and gathers a layer only while it runs; ranks run the same number of passes (a rank short
of examples runs an empty one), only rank 0 reads the weights (the others start on the meta device and receive
their shards), and checkpoints gather the LoRA weights and optimizer state onto rank 0 (`run`).
"""

from tunery_trainer.backends.peft.backend import PeftBackend
from tunery_trainer.backends.peft.config import PeftBackendConfig

__all__ = ["PeftBackend", "PeftBackendConfig"]
