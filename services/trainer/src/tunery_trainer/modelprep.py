"""Base models as plain transformers folders, which is what every backend (and TRL) loads fastest and simplest.

A GGUF (the packaged SmolLM2) is dequantized once into `<data_dir>/models/<name>/hf`: loading a GGUF through
transformers dequantizes on every load (seconds per job) and leaves quantization marks that make PEFT refuse to
train, so the worker pays that once and every job after reads float32 safetensors.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from tunery.models import DEFAULT_MODEL, BaseModelSpec, converted_weights, resolve, tokenizer_source

# Files of a hub model that training needs; everything else (pickled weights, GGUF, ONNX) is skipped.
_HUB_PATTERNS = ["*.json", "*.safetensors", "*.jinja", "*.model", "*.txt", "*.tiktoken"]


def prepare_base_model(spec: BaseModelSpec, data_dir: Path) -> Path:
    """A folder with config.json, safetensors weights and a tokenizer with its chat template."""
    if spec.folder is not None:
        return spec.folder
    if spec.hub_id:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(spec.hub_id, allow_patterns=_HUB_PATTERNS))
    return converted_weights(spec, data_dir)  # a GGUF: dequantized once, shared with the gateway


def build_tiny_llama(out: Path, seed: int = 0, data_dir: Path | None = None) -> Path:
    """A random 3M-parameter Llama with SmolLM2's tokenizer: the real chat template at a fraction of a second a step.

    The tokenizer is converted from the packaged GGUF into `data_dir` (a temporary folder when not given).
    """
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    with tempfile.TemporaryDirectory() as scratch:
        tok = AutoTokenizer.from_pretrained(tokenizer_source(resolve(DEFAULT_MODEL), data_dir or Path(scratch)))
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):  # leave the caller's RNG alone
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), safe_serialization=True)
    tok.save_pretrained(str(out))
    return out
