"""The `transformers` engine: each base model loaded once in this process, its LoRA adapters served by model name."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, ClassVar

import torch

from tunery.errors import InvalidArgument
from tunery.models import BaseModelSpec, model_label, resolve
from tunery.weights import base_model_folder
from tunery_gateway.engines.base import (
    AdapterRef,
    Generation,
    GenerationRequest,
    ScoreRequest,
    ScoreResult,
    ServedBase,
    context_error,
)
from tunery_gateway.engines.transformers.scoring import ScoreJob, encode_score
from tunery_gateway.engines.transformers.worker import BaseWorker, Call
from tunery_gateway.settings import GatewaySettings

log = logging.getLogger("tunery.gateway.transformers")

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def load_worker(spec: BaseModelSpec, settings: GatewaySettings, loop: asyncio.AbstractEventLoop) -> BaseWorker:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = str(base_model_folder(spec, settings.data_dir))
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=_DTYPES[settings.dtype]).to(settings.device)
    model.eval()
    tok = AutoTokenizer.from_pretrained(folder)
    ctx = int(getattr(model.config, "max_position_embeddings", 0) or spec.context_length or 2048)
    if spec.context_length:
        ctx = min(ctx, spec.context_length)
    created = int(Path(folder, "config.json").stat().st_mtime) if Path(folder, "config.json").exists() else 0
    base = ServedBase(id=model_label(spec), spec_name=spec.name, context_length=ctx, created=created)
    return BaseWorker(base, model, tok, settings, loop)


class TransformersEngine:
    """The default engine (`TUNERY_GATEWAY_ENGINE=transformers`); configured by the TUNERY_GATEWAY_* fields
    base_models, max_batch_size, max_queue, queue_timeout_seconds, max_adapters, default_max_tokens, dtype, device,
    torch_threads."""

    name: ClassVar[str] = "transformers"

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.workers: dict[str, BaseWorker] = {}
        self._threads_before = 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.settings.torch_threads:  # process-wide in torch; put back on stop (tests share the process)
            self._threads_before = torch.get_num_threads()
            torch.set_num_threads(self.settings.torch_threads)
        for name in self.settings.base_model_names:
            spec = resolve(name, field="base_models")
            worker = await asyncio.to_thread(load_worker, spec, self.settings, loop)
            if worker.base.id in self.workers:
                raise InvalidArgument(f"two base models are both named {worker.base.id!r}", code="duplicate_model",
                                      field="base_models")
            self.workers[worker.base.id] = worker
            worker.thread.start()
            log.info("serving %s (context %d tokens) from %s", worker.base.id, worker.base.context_length, name)

    async def stop(self) -> None:
        for w in self.workers.values():
            await asyncio.to_thread(w.stop)
        if self._threads_before:
            torch.set_num_threads(self._threads_before)

    def bases(self) -> list[ServedBase]:
        return [w.base for w in self.workers.values()]

    async def check_adapter(self, base: ServedBase, adapter: AdapterRef) -> None:
        await asyncio.to_thread(self.workers[base.id].validate_adapter, adapter)

    async def generate(self, req: GenerationRequest) -> Generation:
        worker = self.workers[req.base]
        loop = asyncio.get_running_loop()
        prompt_ids = await loop.run_in_executor(worker.tokenizer_pool, worker.encode, req)
        ctx = worker.base.context_length
        room = ctx - len(prompt_ids)
        p = req.params
        if room <= 0:
            raise context_error(len(prompt_ids), None, ctx, "messages" if req.messages is not None else "prompt")
        if p.max_tokens is not None and p.max_tokens > room:
            raise context_error(len(prompt_ids), p.max_tokens, ctx, "max_tokens")
        max_tokens = p.max_tokens if p.max_tokens is not None else min(self.settings.default_max_tokens, room)
        gen = Generation(req.request_id, len(prompt_ids), p.n, max_tokens)
        call = Call(gen, req, prompt_ids, max_tokens)
        gen.on_cancel = lambda: worker.cancel(call)
        worker.submit(call)
        return gen

    async def score(self, req: ScoreRequest) -> ScoreResult:
        """Loss of the reference under the base model or its adapter, computed on the base model's worker thread."""
        worker = self.workers[req.base]
        loop = asyncio.get_running_loop()
        tokens = await loop.run_in_executor(worker.tokenizer_pool, encode_score, worker.tok, req, worker.base.id)
        ctx = worker.base.context_length
        if len(tokens.input_ids) > ctx:
            raise InvalidArgument(f"this model's context is {ctx} tokens; the messages and the reference have "
                                  f"{len(tokens.input_ids)}", code="context_length_exceeded", field="reference")
        job = ScoreJob(req, tokens, loop.create_future())
        worker.submit_score(job)
        return await job.future

    def stats(self) -> dict[str, Any]:
        return {base: w.stats() for base, w in self.workers.items()}
