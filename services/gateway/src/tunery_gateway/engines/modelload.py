"""Base models as plain transformers folders, shared with the trainer.

The packaged SmolLM2 is a GGUF; the gateway and the trainer read the same dequantized folder
(`tunery.models.converted_weights`, `<data_dir>/models/<name>/hf`), converted once by whichever starts first.
"""

from __future__ import annotations

from pathlib import Path

from tunery.models import BaseModelSpec, converted_weights


def base_model_folder(spec: BaseModelSpec, data_dir: Path) -> str:
    if spec.folder is not None:
        return str(spec.folder)
    if spec.hub_id:
        return spec.hub_id
    return str(converted_weights(spec, data_dir))
