"""Base-model weights as plain transformers folders: what trainer workers and the gateway load.

Apart from `tunery.models` (the catalog, names and tokenizers, which the torch-free dataset service uses) because
this module needs torch, transformers and huggingface-hub (core's `weights` extra).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from tunery.models import BaseModelSpec, tokenizer_source

# Files of a hub model that loading needs; everything else (pickled weights, GGUF, ONNX) is skipped.
_HUB_PATTERNS = ["*.json", "*.safetensors", "*.jinja", "*.model", "*.txt", "*.tiktoken"]


def base_model_folder(spec: BaseModelSpec, data_dir: Path) -> Path:
    """A plain transformers folder (config.json, safetensors weights, tokenizer with its chat template) of `spec`.

    What trainer workers and the gateway load: a local folder as it is, a hub model's snapshot (downloaded once into
    the hub cache, safetensors only), or the packaged GGUF dequantized once (`converted_weights`). Loading a plain
    folder is what every backend and engine does fastest and simplest.
    """
    if spec.folder is not None:
        return spec.folder
    if spec.hub_id:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(spec.hub_id, allow_patterns=_HUB_PATTERNS))
    return converted_weights(spec, data_dir)


def converted_weights(spec: BaseModelSpec, data_dir: Path) -> Path:
    """A GGUF model dequantized once into `<data_dir>/models/<name>/hf`: float32 safetensors and the tokenizer.

    Loading a GGUF through transformers dequantizes on every load (seconds) and leaves quantization marks that make
    PEFT refuse adapters and `save_pretrained` refuse to save; trainer workers and the gateway share this folder, and
    whichever needs it first converts it, under a lock, into a temporary folder renamed into place (readers see all
    of it or none). Needs torch and transformers (imported here only).
    """
    assert spec.gguf is not None, f"{spec.name} is not a GGUF model"
    out = spec.converted_dir(data_dir) / "hf"
    if (out / "config.json").exists():
        return out
    import fcntl

    out.parent.mkdir(parents=True, exist_ok=True)
    with (out.parent / ".hf.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one conversion at a time on this host; released when the file closes
        if (out / "config.json").exists():
            return out
        tmp = Path(tempfile.mkdtemp(prefix=".hf-", dir=out.parent))
        try:
            _dequantize_gguf(spec, data_dir, tmp)
            tmp.rename(out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _dequantize_gguf(spec: BaseModelSpec, data_dir: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert spec.gguf is not None
    model: Any = AutoModelForCausalLM.from_pretrained(
        str(spec.gguf.parent), gguf_file=spec.gguf.name, dtype=torch.float32
    )
    # The weights are dequantized now; the marks would make save/PEFT treat the model as quantized.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(str(out), safe_serialization=True)
    AutoTokenizer.from_pretrained(tokenizer_source(spec, data_dir)).save_pretrained(str(out))
