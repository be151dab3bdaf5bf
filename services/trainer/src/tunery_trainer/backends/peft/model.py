"""The model a peft run trains: the base with a LoRA adapter, its dtype, FSDP sharding, the frozen head split off for
the chunked loss, and how much activation memory a token costs (which decides checkpointing and pass sizes)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from tunery.errors import InvalidArgument
from tunery_trainer.backends.base import LoraSpec
from tunery_trainer.backends.common import lora_targets
from tunery_trainer.backends.peft.attention import SEGMENTED_ATTENTION, register_attention
from tunery_trainer.backends.peft.config import PeftBackendConfig


def base_dtype(cfg: PeftBackendConfig, device: torch.device) -> torch.dtype:
    if cfg.base_dtype == "bfloat16" or (cfg.base_dtype == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return torch.float32


def load_model(
    model_dir: Path,
    lora: LoraSpec,
    cfg: PeftBackendConfig,
    device: torch.device,
    *,
    checkpointing: bool,
    on_meta: bool = False,
    fsdp: bool = False,
) -> Any:
    """The PEFT LoRA model; on the meta device (no memory) for ranks that receive their FSDP shards from rank 0."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    attn = "sdpa"
    if cfg.padding_free:
        register_attention()
        attn = SEGMENTED_ATTENTION
    dtype = base_dtype(cfg, device)
    model: Any
    if on_meta:
        config = AutoConfig.from_pretrained(str(model_dir))
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=attn)
    else:
        model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=dtype, attn_implementation=attn)
    model.config.use_cache = False
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    peft_config = LoraConfig(
        r=lora.rank,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora_targets(model, lora.target_modules),
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, peft_config)
    return model if fsdp else model.to(device)  # FSDP moves each shard to the device itself


def shard(model: Any, rank: int, world: int, device: torch.device) -> None:
    """FSDP2 `fully_shard` per decoder layer and at the root; rank 0's whole weights are scattered to the others."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    # rank 0's whole weights (LoRA included), kept only until they are scattered below
    full = model.state_dict() if rank == 0 else {}

    mesh = init_device_mesh(device.type, (world,))
    decoder = getattr(model.get_base_model(), "model", None)
    layers = getattr(decoder, "layers", None)
    if layers is None:
        raise InvalidArgument(
            "fsdp needs a decoder with a `layers` list (Llama, Mistral, Qwen, Gemma, ...); this model has none",
            code="fsdp_unsupported_model",
            field="backend_config.fsdp",
        )
    for layer in layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    if rank != 0:
        model.to_empty(device=device)  # room for this rank's shards, filled from rank 0 next
    set_model_state_dict(
        model, full, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True, strict=False)
    )
    del full
    for b in model.buffers():  # not in the state dict (rotary frequencies, ...): rank 0's too
        torch.distributed.broadcast(b.data, src=0)


def full_trainable(model: Any) -> dict[str, torch.Tensor]:
    """LoRA weights by name, whole and on the CPU (under FSDP every rank must call this: it gathers)."""
    out = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            t = p.detach()
            out[name] = (t.full_tensor() if hasattr(t, "full_tensor") else t).cpu()
    return out


def split_head(model: Any, device: torch.device) -> tuple[Any, torch.Tensor | None]:
    """(decoder, frozen head weight) when logits are exactly `decoder(x) @ head.T`, else (None, None).

    Checked numerically on a few tokens rather than trusted per architecture: models that scale or soft-cap
    their logits (Gemma, Cohere, ...) fail the check and keep the ordinary `logits_to_keep` path.
    """
    base = model.get_base_model()
    head, decoder = getattr(base, "lm_head", None), getattr(base, "model", None)
    if not isinstance(head, torch.nn.Linear) or head.bias is not None or head.weight.requires_grad:
        return None, None
    if decoder is None:
        return None, None
    ids = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8]], device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            want = model(input_ids=ids, use_cache=False).logits.float()
            got = (decoder(input_ids=ids, use_cache=False).last_hidden_state @ head.weight.T).float()
    except Exception:
        return None, None
    finally:
        model.train(was_training)
    if want.shape != got.shape or not torch.allclose(want, got, atol=1e-4, rtol=1e-4):
        return None, None
    return decoder, head.weight


def memory_plan(model_dir: Path, device: torch.device, world: int) -> tuple[int, int, int]:
    """(activation bytes per token kept for backward, the same with checkpointing, memory available to a rank).

    Per token and layer, autograd keeps about 20 hidden-wide and 8 MLP-wide fp32 vectors (LoRA inputs, dropout,
    norms, attention, the MLP); measured 3.1 MB/token on SmolLM2-135M (30 x 576, MLP 1536), estimated 2.9.
    With checkpointing, one layer's worth plus each layer's input.
    """
    from transformers import AutoConfig

    c = AutoConfig.from_pretrained(str(model_dir))
    c = getattr(c, "text_config", None) or c
    layers, hidden = int(c.num_hidden_layers), int(c.hidden_size)
    width = int(getattr(c, "intermediate_size", 0) or 4 * hidden)
    per_layer = (20 * hidden + 8 * width) * 4
    if device.type == "cuda":
        available = torch.cuda.mem_get_info(device)[0]
    else:
        import psutil

        available = psutil.virtual_memory().available // int(os.environ.get("LOCAL_WORLD_SIZE", world))
    return layers * per_layer, per_layer + layers * hidden * 8, int(available)
