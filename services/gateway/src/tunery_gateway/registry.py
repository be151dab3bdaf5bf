"""Which model names the gateway serves: the engine's base models and every registered fine-tuned model.

Fine-tuned models live in the gateway's database (so every replica, and a restarted gateway, knows them) and in a
cache here; a name the cache does not know is looked up in the database before it is called unknown, which is how
a replica serves a model that another replica registered from a job event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from tunery.errors import FailedPrecondition, InvalidArgument, NotFound
from tunery_gateway.engines.base import AdapterRef, InferenceEngine, ServedBase, check_trained_on, inspect_adapter
from tunery_gateway.store import AdapterRecord, AdapterStore

log = logging.getLogger("tunery.gateway.registry")
MAX_NAME = 600
LIST_TTL = 1.0


def check_model_name(name: str) -> str:
    """Names reach file paths (adapter folders) and metric labels: refuse anything that could escape or confuse."""
    if not name:
        raise InvalidArgument("'model' is required", code="missing_model", field="model")
    if len(name) > MAX_NAME:
        raise InvalidArgument(f"model name is longer than {MAX_NAME} characters", code="invalid_model", field="model")
    if "\x00" in name or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise InvalidArgument("model name contains a NUL byte or another control character", code="invalid_model",
                              field="model")
    parts = name.replace("\\", "/").split("/")
    if ".." in parts or name.startswith("/"):
        raise InvalidArgument(f"model name {name!r} contains a path ('..' or a leading '/'); use a model id from "
                              "GET /v1/models", code="invalid_model", field="model")
    return name


class ModelRegistry:
    def __init__(self, engine: InferenceEngine, store: AdapterStore) -> None:
        self.engine = engine
        self.store = store
        self.bases: dict[str, ServedBase] = {}
        self.by_spec: dict[str, ServedBase] = {}
        self.adapters: dict[str, AdapterRecord] = {}
        self.started = int(time.time())
        self._listed_at = 0.0

    async def load(self) -> None:
        self.bases = {b.id: b for b in self.engine.bases()}
        self.by_spec = {b.spec_name: b for b in self.bases.values()} | dict(self.bases)
        records = await asyncio.to_thread(self.store.all)
        self.adapters = {r.id: r for r in records}

    def base_for(self, spec_name: str) -> ServedBase | None:
        return self.by_spec.get(spec_name)

    async def resolve(self, name: str) -> tuple[ServedBase, AdapterRef | None]:
        check_model_name(name)
        if name in self.bases:
            return self.bases[name], None
        rec = self.adapters.get(name)
        if rec is None:
            rec = await asyncio.to_thread(self.store.get, name)
            if rec is not None:
                self.adapters[name] = rec
        if rec is None:
            raise NotFound(f"the model {name!r} does not exist; GET /v1/models lists the served ones",
                           code="model_not_found", field="model")
        base = self.base_for(rec.base_model)
        if base is None:
            raise NotFound(f"the model {name!r} is a fine-tune of {rec.base_model!r}, which this gateway does not "
                           "serve", code="model_not_found", field="model")
        return base, AdapterRef(rec.id, Path(rec.adapter_path), rec.job_id)

    async def register(self, model_id: str, adapter_path: Path, *, base_model: str = "", job_id: str = "",
                       source: str = "api") -> AdapterRecord:
        """Check the adapter, once, and store it; idempotent. Later loads trust the record (no second check).

        The check: the folder is a LoRA adapter, its metadata does not name another base, and the engine's own check
        (tensor shapes for transformers). `model_id`, `base_model` and `job_id` default to what the folder's
        tunery_metadata.json says (job events of trainers older than the event's model fields)."""
        if model_id:
            self._check_id(model_id)
        info = await asyncio.to_thread(inspect_adapter, AdapterRef(model_id, adapter_path))
        if not model_id:
            if not info.fine_tuned_model:
                raise FailedPrecondition(f"{adapter_path}/tunery_metadata.json names no fine_tuned_model; give id",
                                         code="invalid_adapter", field="id")
            model_id = self._check_id(info.fine_tuned_model)
        ref = AdapterRef(model_id, adapter_path)
        base_name = base_model or info.base_model
        job_id = job_id or info.job_id
        if not base_name:
            raise FailedPrecondition(f"{adapter_path}/tunery_metadata.json names no base_model; give base_model",
                                     code="invalid_adapter", field="base_model")
        base = self.base_for(base_name)
        if base is None:
            raise FailedPrecondition(f"{model_id}: base model {base_name!r} is not served here; served: "
                                     f"{', '.join(self.bases)}", code="adapter_base_mismatch", field="base_model")
        check_trained_on(ref, info.base_model, base)
        await self.engine.check_adapter(base, ref)
        rec = AdapterRecord(model_id, base.spec_name, str(adapter_path), job_id, source,
                            self.adapters[model_id].created_at if model_id in self.adapters else _now())
        await asyncio.to_thread(self.store.upsert, rec)
        self.adapters[model_id] = rec
        log.info("serving %s (adapter %s on %s)", model_id, adapter_path, base.id)
        return rec

    def _check_id(self, model_id: str) -> str:
        check_model_name(model_id)
        if model_id in self.bases:
            raise InvalidArgument(f"{model_id!r} is a base model", code="invalid_model", field="id")
        return model_id

    async def unregister(self, model_id: str) -> None:
        if not await asyncio.to_thread(self.store.delete, model_id):
            raise NotFound(f"no fine-tuned model {model_id!r}", code="model_not_found", field="model")
        self.adapters.pop(model_id, None)
        self._listed_at = 0.0

    async def listing(self) -> list[dict[str, Any]]:
        """OpenAI model objects; fine-tuned ones name their base in `parent` (and `root`), as vLLM does.

        Read from the database at most every LIST_TTL seconds (other replicas may have registered models);
        registrations through this process show at once."""
        if time.monotonic() - self._listed_at > LIST_TTL:
            records = await asyncio.to_thread(self.store.all)
            self.adapters = {r.id: r for r in records}
            self._listed_at = time.monotonic()
        records = sorted(self.adapters.values(), key=lambda r: r.created_at)
        out = [model_object(b.id, b.created or self.started, None, b) for b in self.bases.values()]
        for r in records:
            base = self.base_for(r.base_model)
            if base is not None:
                out.append(model_object(r.id, int(r.created_at.timestamp()), base.id, base))
        return out

    async def get(self, name: str) -> dict[str, Any]:
        base, adapter = await self.resolve(name)
        if adapter is None:
            return model_object(base.id, base.created or self.started, None, base)
        rec = self.adapters[name]
        return model_object(name, int(rec.created_at.timestamp()), base.id, base)


def _now() -> Any:
    from tunery_gateway.models import now

    return now()


def model_object(model_id: str, created: int, parent: str | None, base: ServedBase) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": created, "owned_by": "tunery",
            "root": parent or model_id, "parent": parent, "max_model_len": base.context_length}
