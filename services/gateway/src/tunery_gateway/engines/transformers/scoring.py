"""Reference scoring (POST /v1/score): the loss of a given assistant answer under a base model or one of its adapters.

The reference becomes the assistant turn after the messages and is tokenized by `tunery.chatformat.encode_chat`
with only that turn trained, so the scored tokens are exactly those the trainer's loss covers (the content through
the end-of-turn token), and the loss is the trainer's: summed cross-entropy of those tokens over their count, with
logits computed only at the scored positions. The forward runs on the base model's worker thread between decode
steps, like every forward of that model: the adapter set (LoRA layers, active adapter, LRU) is only touched there,
adapters of the running batch are never evicted for it, and it uses no KV cache, so the batch's cache is untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from tunery.chatformat import IGNORE_INDEX, Tokenized, encode_chat
from tunery.errors import Internal, InvalidArgument, TuneryError, Unavailable
from tunery_gateway.engines.base import ScoreRequest, ScoreResult
from tunery_gateway.engines.transformers.adapters import AdapterSet
from tunery_gateway.errors import Overloaded

log = logging.getLogger("tunery.gateway.transformers")


@dataclass(eq=False)
class ScoreJob:
    req: ScoreRequest
    tokens: Tokenized
    future: asyncio.Future[ScoreResult]


class ScoreQueue:
    """Scoring jobs waiting for the worker thread, bounded like the generation queue; results hop back to the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int, model: str) -> None:
        self.loop = loop
        self.limit = limit
        self.model = model
        self.jobs: deque[ScoreJob] = deque()
        self.lock = threading.Lock()
        self.closed = False

    def __len__(self) -> int:
        return len(self.jobs)

    def put(self, job: ScoreJob) -> None:
        with self.lock:
            if self.closed:
                raise Unavailable("the gateway is shutting down", code="shutting_down")
            if len(self.jobs) >= self.limit:
                raise Overloaded(f"{self.model} has {len(self.jobs)} scoring calls waiting (limit {self.limit}); "
                                 "retry later", code="overloaded", retry_after=1.0)
            self.jobs.append(job)

    def take(self) -> ScoreJob | None:
        """The next job whose caller is still waiting (a cancelled call is dropped unscored)."""
        with self.lock:
            while self.jobs:
                job = self.jobs.popleft()
                if not job.future.done():
                    return job
        return None

    def run_next(self, adapters: AdapterSet, device: torch.device, in_use: set[str], counters: dict[str, int]) -> None:
        """Score the next job (worker thread only); `in_use`: adapters of the running batch, never evicted for it."""
        job = self.take()
        if job is None:
            return
        outcome: ScoreResult | BaseException
        try:
            outcome = score_tokens(adapters, device, job.tokens, adapters.ensure(job.req.adapter, in_use))
            counters["scores"] += 1
        except TuneryError as err:
            outcome = err
        except Exception as err:  # a bug or out of memory: this call fails, the running batch goes on
            log.exception("scoring failed on %s", self.model)
            outcome = Internal(f"scoring failed ({type(err).__name__}); see the gateway log", code="scoring_failed")
        self.resolve(job, outcome)

    def close(self) -> None:
        with self.lock:
            self.closed = True
            jobs, self.jobs = list(self.jobs), deque()
        for job in jobs:
            self.resolve(job, Unavailable("the gateway is shutting down", code="shutting_down"))

    def resolve(self, job: ScoreJob, outcome: ScoreResult | BaseException) -> None:
        """Deliver on the event loop (called from the worker thread)."""

        def deliver() -> None:
            if job.future.done():  # the caller went away
                return
            if isinstance(outcome, BaseException):
                job.future.set_exception(outcome)
            else:
                job.future.set_result(outcome)

        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening any more
            self.loop.call_soon_threadsafe(deliver)


def encode_score(tok: Any, req: ScoreRequest, model: str) -> Tokenized:
    """Token ids and labels of messages + the reference as the assistant's turn (only that turn is labelled)."""
    if not getattr(tok, "chat_template", None):
        raise InvalidArgument(f"{model} has no chat template, so a reference cannot be scored as a chat turn",
                              code="no_chat_template", field="messages")
    messages = [*req.messages, {"role": "assistant", "content": req.reference}]
    tokens = encode_chat(tok, messages, trained=[False] * len(req.messages) + [True])
    if not tokens.n_trained:
        raise InvalidArgument(f"the chat template of {model} renders no tokens for the reference",
                              code="nothing_to_score", field="reference")
    return tokens


def score_tokens(adapters: AdapterSet, device: torch.device, tokens: Tokenized, adapter: str) -> ScoreResult:
    """One forward of the sequence with `adapter` (an internal name from `AdapterSet.ensure`); worker thread only."""
    ids = torch.tensor([tokens.input_ids], dtype=torch.long, device=device)
    labels = torch.tensor([tokens.labels], dtype=torch.long, device=device)
    targets = labels[:, 1:]
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = targets != IGNORE_INDEX
    gold = targets[targets != IGNORE_INDEX]
    out = adapters.forward({"input_ids": ids, "attention_mask": torch.ones_like(ids), "use_cache": False,
                            "logits_to_keep": keep}, [adapter])
    logits = out.logits
    if logits.ndim == 3:  # an architecture that ignores a mask in logits_to_keep returned every position
        logits = logits[keep]
    logits = logits.float().reshape(-1, logits.shape[-1])
    n = int(gold.numel())
    loss = float(F.cross_entropy(logits, gold, reduction="sum")) / n
    correct = int((logits.argmax(-1) == gold).sum())
    return ScoreResult(loss=loss, tokens=n, total_tokens=len(tokens.input_ids), token_accuracy=correct / n)
