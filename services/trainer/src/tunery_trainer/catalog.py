"""What a job can be made of: the installed backends (with their documented config) and the base models."""

from __future__ import annotations

from typing import Literal

from tunery.models import BASE_MODELS, DEFAULT_MODEL, resolve
from tunery_trainer.backends.registry import BACKENDS, config_schema, get_backend, provided_by
from tunery_trainer.domain import BackendInfo, BaseModelInfo, ConfigField


def backends() -> list[BackendInfo]:
    out = []
    for name in BACKENDS.names():
        b = get_backend(name)
        config = tuple(ConfigField(f.name, f.type, f.default_json, f.help) for f in config_schema(b.config_class))
        out.append(BackendInfo(name, b.description, tuple(b.methods), config, provided_by(name)))
    return out


def base_models() -> list[BaseModelInfo]:
    out = []
    for name in BASE_MODELS.names():
        spec = resolve(name)
        source: Literal["gguf", "folder", "hub"] = "gguf" if spec.gguf else "folder" if spec.folder else "hub"
        out.append(BaseModelInfo(spec.name, spec.description, spec.context_length, source, name == DEFAULT_MODEL))
    return out
