"""Base models as plain transformers folders, shared with the trainer.

The packaged SmolLM2 is a GGUF; loading it through transformers dequantizes on every start and leaves quantization
marks that make PEFT refuse adapters. The trainer converts it once into `<data_dir>/models/<name>/hf`
(tunery_trainer.modelprep); the gateway reads that folder when it exists and otherwise writes it the same way, under
the same lock, so whichever service starts first pays for the conversion once. (The gateway image does not ship the
trainer, hence this small copy; moving `prepare_base_model` into `tunery.models` would remove it.)
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from tunery.models import BaseModelSpec, tokenizer_source


def base_model_folder(spec: BaseModelSpec, data_dir: Path) -> str:
    if spec.folder is not None:
        return str(spec.folder)
    if spec.hub_id:
        return spec.hub_id
    assert spec.gguf is not None
    out = spec.converted_dir(data_dir) / "hf"
    if (out / "config.json").exists():
        return str(out)
    from filelock import FileLock

    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out.parent / ".hf.lock")):
        if (out / "config.json").exists():
            return str(out)
        tmp = Path(tempfile.mkdtemp(prefix=".hf-", dir=out.parent))
        try:
            _convert_gguf(spec, data_dir, tmp)
            tmp.rename(out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return str(out)


def _convert_gguf(spec: BaseModelSpec, data_dir: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert spec.gguf is not None
    model = AutoModelForCausalLM.from_pretrained(str(spec.gguf.parent), gguf_file=spec.gguf.name, dtype=torch.float32)
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(str(out), safe_serialization=True)
    AutoTokenizer.from_pretrained(tokenizer_source(spec, data_dir)).save_pretrained(str(out))
