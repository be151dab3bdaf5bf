"""In-process inference with transformers: each base model loaded once, its LoRA adapters served by model name.

One worker thread per base model runs continuous batching: new calls join the running batch between decode steps
(their prompt is prefilled on its own, then its KV cache is left-padded and stacked onto the batch's), finished or
cancelled sequences leave it at once, and columns that became pure padding are trimmed. Calls for different adapters
of one base share a batch: PEFT's mixed-batch forward (`adapter_names`) applies each row's adapter (rows of the base
model skip the LoRA path); a batch whose rows all use one adapter, or none, takes the plain forward, which costs less.
The event loop never runs torch; tokens reach it through `call_soon_threadsafe`, once per step.

Why not transformers' own continuous batching (`generate_batch` / `init_continuous_batching`)? It has no per-request
LoRA adapter, seed or stop strings, and the gateway needs all three; this loop is ~300 lines and measured in bench/.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import threading
import time
import warnings
from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from tunery.errors import FailedPrecondition, Internal, InvalidArgument, TuneryError, Unavailable
from tunery.models import BaseModelSpec, base_model_folder, model_label, resolve
from tunery_gateway.engines.base import (
    BASE_ADAPTER,
    AdapterRef,
    Event,
    Failed,
    Finished,
    Generation,
    GenerationRequest,
    ServedBase,
    TextDelta,
    context_error,
)
from tunery_gateway.engines.text import TextTracker
from tunery_gateway.errors import Overloaded
from tunery_gateway.settings import GatewaySettings

log = logging.getLogger("tunery.gateway.transformers")
# PEFT warns when the adapter it deems "active" is evicted; rows always name their adapter, so "active" means nothing.
warnings.filterwarnings("ignore", message=r"Adapter .* was active which is now deleted")

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def sample_row(logits: np.ndarray, temperature: float, top_p: float, rng: np.random.Generator) -> int:
    """One token from softmax(logits / temperature), restricted to the top-p nucleus; exact.

    The nucleus is looked for among the 256 likeliest tokens first (one argpartition), and the whole vocabulary is
    sorted only when those do not reach top_p.
    """
    x = logits.astype(np.float64) / temperature
    x -= x.max()
    probs = np.exp(x)
    probs /= probs.sum()
    if top_p < 1.0:
        k = min(256, probs.size)
        cand = np.argpartition(probs, probs.size - k)[probs.size - k:] if k < probs.size else np.arange(probs.size)
        if probs[cand].sum() < top_p:
            cand = np.arange(probs.size)
        order = cand[np.argsort(-probs[cand], kind="stable")]
        cum = np.cumsum(probs[order])
        keep = order[: int(np.searchsorted(cum, top_p, side="left")) + 1]
        cdf = np.cumsum(probs[keep])
        return int(keep[min(int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right")), keep.size - 1)])
    cdf = np.cumsum(probs)
    return int(min(int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right")), probs.size - 1))


def internal_name(model_id: str) -> str:
    """PEFT adapter names become module keys, which cannot hold '.'; model ids can."""
    return "a" + hashlib.sha1(model_id.encode()).hexdigest()[:16]


@dataclass(eq=False)
class _Call:
    gen: Generation
    req: GenerationRequest
    prompt_ids: list[int]
    max_tokens: int
    enqueued: float = field(default_factory=time.monotonic)
    cancelled: bool = False


@dataclass(eq=False)
class _Row:
    call: _Call
    index: int
    text: TextTracker
    adapter: str
    rng: np.random.Generator
    produced: int = 0


@dataclass(eq=False)
class _Batch:
    rows: list[_Row]
    cache: Any
    mask: torch.Tensor  # [B, T] 1 for real tokens, 0 for left padding
    next_tokens: torch.Tensor  # [B] sampled, not yet fed
    positions: torch.Tensor  # [B] position of the next fed token (= real tokens so far)


def _left_pad(t: torch.Tensor, n: int, dim: int) -> torch.Tensor:
    if n == 0:
        return t
    shape = list(t.shape)
    shape[dim] = n
    return torch.cat([t.new_zeros(shape), t], dim=dim)


class BaseWorker:
    """One base model, its adapters (LRU), its queue and the thread that batches its calls."""

    def __init__(self, base: ServedBase, model: Any, tok: Any, settings: GatewaySettings,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.base = base
        self.model = model
        self.tok = tok
        self.settings = settings
        self.loop = loop
        self.device = next(model.parameters()).device
        self.peft: Any = None
        self._layers = "on"  # whether PEFT's LoRA layers are enabled (they are when an adapter is first loaded)
        self.loaded: OrderedDict[str, AdapterRef] = OrderedDict()
        self.pending: deque[_Call] = deque()
        self.queued = 0
        self.batch: _Batch | None = None
        self._admitting: list[_Call] = []
        self.lock = threading.Lock()
        # Held while PEFT adds or removes adapter modules, so a shape check from another thread never sees half a tree.
        self.modules_lock = threading.Lock()
        self.wake = threading.Event()
        self.stopping = False
        self.mergeable = True
        self.counters = {"steps": 0, "rows_stepped": 0, "prefills": 0, "adapter_loads": 0, "adapter_evictions": 0,
                         "mixed_steps": 0}
        eos = model.generation_config.eos_token_id if model.generation_config is not None else None
        self.eos = {int(e) for e in (eos if isinstance(eos, list) else [eos]) if e is not None}
        if tok.eos_token_id is not None:
            self.eos.add(int(tok.eos_token_id))
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else next(iter(self.eos), 0)
        self.tokenizer_pool = ThreadPoolExecutor(1, thread_name_prefix=f"tok-{base.id[:20]}")
        self.thread = threading.Thread(target=self._run, name=f"engine-{base.id[:40]}", daemon=True)

    # ---- called from the event loop ---------------------------------------------------------------------------------

    def encode(self, req: GenerationRequest) -> list[int]:
        """Prompt token ids; runs on the tokenizer thread (jinja and tokenizers hold the GIL, not the loop)."""
        if req.messages is None:
            return list(self.tok(req.prompt or "")["input_ids"])
        if not getattr(self.tok, "chat_template", None):
            raise InvalidArgument(f"{self.base.id} has no chat template; use /v1/completions with a prompt",
                                  code="no_chat_template", field="messages")
        try:
            text = self.tok.apply_chat_template(req.messages, tokenize=False, add_generation_prompt=True)
        except Exception as err:  # jinja2.TemplateError, raise_exception() in the template, type errors
            raise InvalidArgument(f"the chat template of {self.base.id} cannot render these messages: {err}",
                                  code="invalid_messages", field="messages") from err
        return list(self.tok(text, add_special_tokens=False)["input_ids"])

    def submit(self, call: _Call) -> None:
        n = call.req.params.n
        with self.lock:
            if self.stopping:
                raise Unavailable("the gateway is shutting down", code="shutting_down")
            if self.queued + n > self.settings.max_queue:
                raise Overloaded(f"{self.base.id} has {self.queued} sequences waiting (limit "
                                 f"{self.settings.max_queue}); retry later", code="overloaded", retry_after=1.0)
            self.pending.append(call)
            self.queued += n
        self.wake.set()

    def cancel(self, call: _Call) -> None:
        call.cancelled = True
        self.wake.set()

    def stats(self) -> dict[str, Any]:
        b = self.batch
        return {"running": len(b.rows) if b is not None else 0, "queued": self.queued,
                "adapters_loaded": len(self.loaded), **self.counters}

    def stop(self) -> None:
        with self.lock:
            self.stopping = True
            pending, self.pending = list(self.pending), deque()
            self.queued = 0
        for call in pending:
            self._post([(call.gen, Failed(Unavailable("the gateway is shutting down", code="shutting_down")))])
        self.wake.set()
        self.thread.join(30)
        self.tokenizer_pool.shutdown(wait=False, cancel_futures=True)

    # ---- adapters ---------------------------------------------------------------------------------------------------

    def validate_adapter(self, adapter: AdapterRef) -> None:
        """Tensor shapes against the base's modules, so a mismatched folder is refused before it touches the model.

        Once, at registration (`check_adapter`); loading a registered adapter later trusts that check."""
        from safetensors import safe_open

        problems: list[str] = []
        with self.modules_lock, safe_open(str(adapter.path / "adapter_model.safetensors"), "pt") as f:
            for key in f.keys():
                for part, dim in ((".lora_A.weight", 1), (".lora_B.weight", 0)):
                    if not key.endswith(part):
                        continue
                    name = key.removeprefix("base_model.model.").removesuffix(part)
                    try:
                        module = self.model.get_submodule(name)
                    except AttributeError:
                        problems.append(f"{name} does not exist in {self.base.id}")
                        continue
                    module = getattr(module, "base_layer", module)
                    want = getattr(module, "in_features" if dim == 1 else "out_features", None)
                    got = f.get_slice(key).get_shape()[dim]
                    if want is not None and want != got:
                        problems.append(f"{name}: the adapter has {got} {'inputs' if dim == 1 else 'outputs'}, "
                                        f"{self.base.id} has {want}")
        if problems:
            more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
            raise FailedPrecondition(f"{adapter.model_id}: the adapter in {adapter.path} does not fit base model "
                                     f"{self.base.id}: {'; '.join(problems[:3])}{more}",
                                     code="adapter_base_mismatch", field="model")

    def _ensure_adapter(self, ref: AdapterRef | None, in_use: set[str]) -> str:
        if ref is None:
            return BASE_ADAPTER
        name = internal_name(ref.model_id)
        if name in self.loaded:
            self.loaded.move_to_end(name)
            return name
        while len(self.loaded) >= self.settings.max_adapters:
            victim = next((n for n in self.loaded if n not in in_use), None)
            if victim is None:  # every loaded adapter is in the running batch: exceed the limit until they finish
                break
            with self.modules_lock:
                self.peft.delete_adapter(victim)
            evicted = self.loaded.pop(victim)
            self.counters["adapter_evictions"] += 1
            log.info("evicted adapter %s from %s (least recently used)", evicted.model_id, self.base.id)
        from peft import PeftModel

        try:
            with self.modules_lock:
                if self.peft is None:
                    self.peft = PeftModel.from_pretrained(self.model, str(ref.path), adapter_name=name,
                                                          is_trainable=False)
                    self.peft.eval()
                else:
                    self.peft.load_adapter(str(ref.path), adapter_name=name, is_trainable=False)
        except Exception as err:
            if self.peft is not None and name in getattr(self.peft, "peft_config", {}):
                with contextlib.suppress(Exception):
                    self.peft.delete_adapter(name)
            raise FailedPrecondition(f"{ref.model_id}: cannot load the adapter in {ref.path}: {err}",
                                     code="invalid_adapter", field="model") from err
        self._layers = "unknown"  # loading may switch layers and the active adapter: set them again before use
        self.loaded[name] = ref
        self.counters["adapter_loads"] += 1
        log.info("loaded adapter %s onto %s (%d loaded)", ref.model_id, self.base.id, len(self.loaded))
        return name

    # ---- the worker thread ------------------------------------------------------------------------------------------

    def _post(self, items: list[tuple[Generation, Event]]) -> None:
        if not items:
            return

        def deliver() -> None:
            for gen, ev in items:
                gen.push(ev)

        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening any more
            self.loop.call_soon_threadsafe(deliver)

    def _run(self) -> None:
        with torch.inference_mode():
            while not self.stopping:
                try:
                    self._admit()
                    if self.batch is None:
                        self.wake.wait(0.5)
                        self.wake.clear()
                        continue
                    self._compact([False] * len(self.batch.rows))
                    if self.batch is not None:
                        self._decode()
                except Exception as err:  # a bug or out of memory: fail what runs, keep serving the rest
                    log.exception("generation failed on %s", self.base.id)
                    failure = Internal(f"generation failed ({type(err).__name__}); see the gateway log",
                                       code="generation_failed")
                    self._post([(c.gen, Failed(failure)) for c in self._admitting])
                    self._fail_batch(failure)
                finally:
                    self._admitting = []
        self._fail_batch(Unavailable("the gateway is shutting down", code="shutting_down"))

    def _fail_batch(self, err: TuneryError) -> None:
        if self.batch is None:
            return
        calls = {id(r.call): r.call for r in self.batch.rows}
        self.batch = None
        self._post([(c.gen, Failed(err)) for c in calls.values()])

    def _admit(self) -> None:
        running = len(self.batch.rows) if self.batch is not None else 0
        if running and not self.mergeable:
            return
        slots = self.settings.max_batch_size - running
        group: list[_Call] = []
        expired: list[_Call] = []
        t = time.monotonic()
        with self.lock:
            while self.pending:
                call = self.pending[0]
                n = call.req.params.n
                if not call.cancelled and t - call.enqueued <= self.settings.queue_timeout_seconds:
                    if n > slots and (group or running):
                        break
                    group.append(call)
                    slots -= n
                elif not call.cancelled:
                    expired.append(call)
                self.pending.popleft()
                self.queued -= n
        for call in expired:
            self._post([(call.gen, Failed(Overloaded(
                f"waited more than {self.settings.queue_timeout_seconds:g} s for a free slot on {self.base.id}",
                code="queue_timeout", retry_after=5.0)))])
        if not group:
            return
        in_use = {r.adapter for r in self.batch.rows} if self.batch is not None else set()
        ready: list[tuple[_Call, str]] = []
        for call in group:
            try:
                name = self._ensure_adapter(call.req.adapter, in_use)
            except TuneryError as err:
                self._post([(call.gen, Failed(err))])
                continue
            in_use.add(name)
            ready.append((call, name))
        if ready:
            self._admitting = [c for c, _ in ready]  # failed together with the batch if the prefill breaks
            self._prefill(ready)

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, cache: Any,
                 names: list[str]) -> torch.Tensor:
        kw = {"input_ids": ids, "attention_mask": mask, "position_ids": pos, "cache": cache, "use_cache": True,
              "logits_to_keep": 1}
        if self.peft is None:
            out = self.model(**kw)
        elif names.count(names[0]) == len(names):  # one adapter (or none) for the whole batch: the plain forward
            self._use_adapter(names[0])
            out = self.peft(**kw)
        else:
            self._use_adapter(None)
            self.counters["mixed_steps"] += 1
            out = self.peft(**kw, adapter_names=names)
        return out.logits[:, -1, :].float()

    def _use_adapter(self, name: str | None) -> None:
        """Switch the LoRA layers only when the batch's adapter changes: toggling 200 modules per step would cost
        more than the adapter itself. `name` None: layers on for a mixed batch; BASE_ADAPTER: layers off."""
        want = "off" if name == BASE_ADAPTER else "on"
        if self._layers != want:
            if want == "off":
                self.peft.base_model.disable_adapter_layers()
            else:
                self.peft.base_model.enable_adapter_layers()
            self._layers = want
        if name not in (None, BASE_ADAPTER) and self.peft.active_adapter != name:
            self.peft.set_adapter(name)

    def _prefill(self, ready: list[tuple[_Call, str]]) -> None:
        from transformers import DynamicCache

        calls = [c for c, _ in ready]
        width = max(len(c.prompt_ids) for c in calls)
        ids = torch.full((len(calls), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(calls), width), dtype=torch.long)
        for i, c in enumerate(calls):
            ids[i, width - len(c.prompt_ids):] = torch.tensor(c.prompt_ids, dtype=torch.long)
            mask[i, width - len(c.prompt_ids):] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache(config=self.model.config)
        logits = self._forward(ids, mask, pos, cache, [name for _, name in ready])
        self.counters["prefills"] += 1
        self.mergeable = all(type(layer).__name__ == "DynamicLayer" for layer in cache.layers)
        rep = [i for i, c in enumerate(calls) for _ in range(c.req.params.n)]
        if len(rep) != len(calls):
            index = torch.tensor(rep, device=self.device)
            cache.batch_select_indices(index)
            logits, mask = logits[index], mask[index]
        rows: list[_Row] = []
        for (call, name) in ready:
            p = call.req.params
            for k in range(p.n):
                rng = np.random.default_rng(None if p.seed is None else [p.seed % 2**63, k])
                rows.append(_Row(call, k, TextTracker(self.tok, p.stop), name, rng))
        tokens = self._sample(logits, rows)
        new = _Batch(rows, cache, mask, tokens, mask.sum(-1))
        done = self._accept(rows, tokens)
        if self.batch is None:
            self.batch = new
            self._compact(done)
            return
        keep = [i for i, d in enumerate(done) if not d]
        if not keep:
            return
        if len(keep) != len(rows):
            index = torch.tensor(keep, device=self.device)
            new.cache.batch_select_indices(index)
            new.rows = [rows[i] for i in keep]
            new.mask, new.next_tokens, new.positions = new.mask[index], new.next_tokens[index], new.positions[index]
        self._merge(new)

    def _merge(self, new: _Batch) -> None:
        b = self.batch
        assert b is not None
        t1, t2 = b.mask.shape[1], new.mask.shape[1]
        width = max(t1, t2)
        for old_layer, new_layer in zip(b.cache.layers, new.cache.layers, strict=True):
            old_layer.keys = torch.cat([_left_pad(old_layer.keys, width - t1, 2),
                                        _left_pad(new_layer.keys, width - t2, 2)], 0)
            old_layer.values = torch.cat([_left_pad(old_layer.values, width - t1, 2),
                                          _left_pad(new_layer.values, width - t2, 2)], 0)
        b.mask = torch.cat([_left_pad(b.mask, width - t1, 1), _left_pad(new.mask, width - t2, 1)], 0)
        b.next_tokens = torch.cat([b.next_tokens, new.next_tokens])
        b.positions = torch.cat([b.positions, new.positions])
        b.rows.extend(new.rows)

    def _decode(self) -> None:
        b = self.batch
        assert b is not None
        b.mask = torch.cat([b.mask, b.mask.new_ones((b.mask.shape[0], 1))], 1)
        names = [r.adapter for r in b.rows]
        logits = self._forward(b.next_tokens[:, None], b.mask, b.positions[:, None], b.cache, names)
        self.counters["steps"] += 1
        self.counters["rows_stepped"] += len(b.rows)
        b.positions = b.positions + 1
        b.next_tokens = self._sample(logits, b.rows)
        self._compact(self._accept(b.rows, b.next_tokens))

    def _sample(self, logits: torch.Tensor, rows: list[_Row]) -> torch.Tensor:
        """Greedy rows take the argmax; the others sample in numpy with their own generator (seeded when asked).

        numpy, not torch: a vocabulary-wide torch op (softmax, sort, multinomial) is dispatched to the intra-op thread
        pool, and on a busy CPU waking those threads cost 10-30 ms per op in our measurements, more than the sampling.
        """
        out = logits.argmax(-1)
        hot = [i for i, r in enumerate(rows) if r.call.req.params.temperature > 0]
        if not hot:
            return out
        values = logits[hot].cpu().numpy()
        for j, i in enumerate(hot):
            row = rows[i]
            out[i] = sample_row(values[j], row.call.req.params.temperature, row.call.req.params.top_p, row.rng)
        return out

    def _accept(self, rows: list[_Row], tokens: torch.Tensor) -> list[bool]:
        """Turn each row's new token into text and events; True where the row is finished."""
        items: list[tuple[Generation, Event]] = []
        done: list[bool] = []
        for row, token in zip(rows, tokens.tolist(), strict=True):
            call = row.call
            if call.cancelled:
                done.append(True)
                continue
            row.produced += 1
            reason = ""
            if token in self.eos:
                reason, text = "stop", row.text.flush()
            else:
                text, hit = row.text.add(token)
                if hit:
                    reason = "stop"
                elif row.produced >= call.max_tokens:
                    reason, text = "length", text + row.text.flush()
            if text:
                items.append((call.gen, TextDelta(row.index, text)))
            if reason:
                items.append((call.gen, Finished(row.index, reason, row.produced)))
            done.append(bool(reason))
        self._post(items)
        return done

    def _compact(self, done: list[bool]) -> None:
        b = self.batch
        assert b is not None
        keep = [i for i, (r, d) in enumerate(zip(b.rows, done, strict=True)) if not d and not r.call.cancelled]
        if len(keep) == len(b.rows):
            return
        if not keep:
            self.batch = None
            return
        index = torch.tensor(keep, device=self.device)
        b.cache.batch_select_indices(index)
        b.rows = [b.rows[i] for i in keep]
        b.mask, b.next_tokens, b.positions = b.mask[index], b.next_tokens[index], b.positions[index]
        first = int((b.mask.sum(0) > 0).nonzero()[0])  # columns left of this are padding in every row
        if first > 0:
            b.mask = b.mask[:, first:]
            for layer in b.cache.layers:
                layer.keys = layer.keys[:, :, first:]
                layer.values = layer.values[:, :, first:]


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
        call = _Call(gen, req, prompt_ids, max_tokens)
        gen.on_cancel = lambda: worker.cancel(call)
        worker.submit(call)
        return gen

    def stats(self) -> dict[str, Any]:
        return {base: w.stats() for base, w in self.workers.items()}
