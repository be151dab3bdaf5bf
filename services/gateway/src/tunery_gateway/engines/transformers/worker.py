"""Continuous batching for one base model, on a thread of its own.

New calls join the running batch between decode steps (their prompt is prefilled on its own, then its KV cache is
left-padded and stacked onto the batch's), finished or cancelled sequences leave it at once, and columns that became
pure padding are trimmed. Rows of one batch may use different adapters (see `adapters.AdapterSet`). The event loop
never runs torch; tokens reach it through `call_soon_threadsafe`, once per step. Reference scoring (POST /v1/score)
runs here too, one forward between two decode steps (scoring.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from tunery.errors import Internal, TuneryError, Unavailable
from tunery_gateway.engines.base import (
    AdapterRef,
    Event,
    Failed,
    Finished,
    Generation,
    GenerationRequest,
    ServedBase,
    TextDelta,
)
from tunery_gateway.engines.text import TextTracker
from tunery_gateway.engines.transformers.adapters import AdapterSet
from tunery_gateway.engines.transformers.prompt import encode_request
from tunery_gateway.engines.transformers.sampling import sample_row
from tunery_gateway.engines.transformers.scoring import ScoreJob, ScoreQueue
from tunery_gateway.errors import Overloaded
from tunery_gateway.settings import GatewaySettings

log = logging.getLogger("tunery.gateway.transformers")


@dataclass(eq=False)
class Call:
    gen: Generation
    req: GenerationRequest
    prompt_ids: list[int]
    max_tokens: int
    enqueued: float = field(default_factory=time.monotonic)
    cancelled: bool = False


@dataclass(eq=False)
class _Row:
    call: Call
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
        self.pending: deque[Call] = deque()
        self.queued = 0
        self.batch: _Batch | None = None
        self._admitting: list[Call] = []
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.stopping = False
        self.mergeable = True
        self.counters = {"steps": 0, "rows_stepped": 0, "prefills": 0, "adapter_loads": 0, "adapter_evictions": 0,
                         "mixed_steps": 0, "scores": 0}
        self.adapters = AdapterSet(model, base, settings.max_adapters, self.counters)
        self.scores = ScoreQueue(loop, settings.max_queue, base.id)
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
        return encode_request(self.tok, req, self.base.id)

    def submit(self, call: Call) -> None:
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

    def submit_score(self, job: ScoreJob) -> None:
        """Queue a reference scoring; the worker thread runs it between decode steps (see scoring.py)."""
        self.scores.put(job)
        self.wake.set()

    def cancel(self, call: Call) -> None:
        call.cancelled = True
        self.wake.set()

    def stats(self) -> dict[str, Any]:
        b = self.batch
        return {"running": len(b.rows) if b is not None else 0, "queued": self.queued,
                "adapters_loaded": len(self.adapters.loaded), **self.counters}

    def stop(self) -> None:
        with self.lock:
            self.stopping = True
            pending, self.pending = list(self.pending), deque()
            self.queued = 0
        self.scores.close()
        for call in pending:
            self._post([(call.gen, Failed(Unavailable("the gateway is shutting down", code="shutting_down")))])
        self.wake.set()
        self.thread.join(30)
        self.tokenizer_pool.shutdown(wait=False, cancel_futures=True)

    # ---- adapters ---------------------------------------------------------------------------------------------------

    @property
    def loaded(self) -> OrderedDict[str, AdapterRef]:
        return self.adapters.loaded

    def validate_adapter(self, adapter: AdapterRef) -> None:
        self.adapters.validate(adapter)

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
                    self._score_next()
                    self._admit()
                    if self.batch is None:
                        if not self.scores:  # more scoring waiting: go round again without sleeping
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

    def _score_next(self) -> None:
        """One waiting scoring job, if any (one forward: a running batch waits one step at most per job)."""
        in_use = {r.adapter for r in self.batch.rows} if self.batch is not None else set()
        self.scores.run_next(self.adapters, self.device, in_use, self.counters)

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
        group: list[Call] = []
        expired: list[Call] = []
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
        ready: list[tuple[Call, str]] = []
        for call in group:
            try:
                name = self.adapters.ensure(call.req.adapter, in_use)
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
        return self.adapters.forward(kw, names).logits[:, -1, :].float()

    def _prefill(self, ready: list[tuple[Call, str]]) -> None:
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
