"""One peft training run: the loop, its data passes, several ranks, evaluation, and the state a checkpoint captures.

The model is built by `model`, the loss is `loss.head_loss`, checkpoint files are `checkpoint`'s; this class holds
what changes while training (step, counters, optimizer, scheduler) and decides what a checkpoint records.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import random
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from tunery.chatformat import IGNORE_INDEX, Tokenized
from tunery_trainer.backends.base import (
    CheckpointInfo,
    Outcome,
    StepMetrics,
    TrainingContext,
    TrainingResult,
    ValidationMetrics,
)
from tunery_trainer.backends.common import atomic_dir, encode_datasets, write_metadata
from tunery_trainer.backends.peft import checkpoint
from tunery_trainer.backends.peft.attention import segment_bounds
from tunery_trainer.backends.peft.config import PeftBackendConfig
from tunery_trainer.backends.peft.loss import head_loss
from tunery_trainer.backends.peft.model import full_trainable, load_model, memory_plan, shard, split_head
from tunery_trainer.data import collate_padded, collate_padding_free, shuffled_batches

log = logging.getLogger("tunery.trainer.peft")


class Run:
    """One training run: state that a checkpoint captures lives here."""

    def __init__(self, ctx: TrainingContext, config: PeftBackendConfig) -> None:
        from transformers import AutoTokenizer

        self.ctx, self.cfg, spec = ctx, config, ctx.spec
        self.rank, self.world = 0, 1
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            self.rank, self.world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        if config.device == "auto":
            self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        else:
            self.device = torch.device(config.device)
        if self.device.type == "cuda" and self.world > 1 and self.device.index is None:
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", self.rank)))
        self.tokenizer = AutoTokenizer.from_pretrained(str(ctx.model_dir))
        train, valid = encode_datasets(ctx, self.tokenizer)
        self.train_set, self.valid_set = train.examples, valid.examples
        self.lengths = [len(e.input_ids) for e in self.train_set]
        self.batches_per_epoch = math.ceil(len(self.train_set) / spec.batch_size)
        self.steps_per_epoch = math.ceil(self.batches_per_epoch / spec.gradient_accumulation_steps)
        self.total_steps = self.steps_per_epoch * spec.n_epochs
        self.step = 0
        self.trained_tokens = 0  # all tokens processed, as OpenAI counts trained_tokens
        self.loss_sum = 0.0
        self.valid: ValidationMetrics | None = None
        self._epoch_cache: tuple[int, list[list[int]]] | None = None

        random.seed(spec.seed)
        torch.manual_seed(spec.seed)  # LoRA init and dropout
        self.fsdp = config.fsdp and self.world > 1
        # An example cannot be split across passes: if the longest one's activations would not fit, recompute them.
        self._per_token, self._per_token_ckpt, self._available = memory_plan(ctx.model_dir, self.device, self.world)
        self.checkpointing = config.grad_checkpointing or max(self.lengths) * self._per_token > self._available // 2
        if self.checkpointing and not config.grad_checkpointing:
            log.warning(
                "gradient checkpointing on: the longest example (%d tokens) needs ~%.1f GB of activations, %.1f GB "
                "available",
                max(self.lengths),
                max(self.lengths) * self._per_token / 1e9,
                self._available / 1e9,
            )
        # Under FSDP only rank 0 reads the weights; the others build the model on the meta device (no memory)
        # and receive their shards from rank 0 after sharding: one copy of the base model in host memory, not N.
        self.model = load_model(
            ctx.model_dir,
            spec.lora,
            config,
            self.device,
            checkpointing=self.checkpointing,
            on_meta=self.fsdp and self.rank != 0,
            fsdp=self.fsdp,
        )
        if self.fsdp:
            if ctx.resume_from is not None and self.rank == 0:  # into the whole model, before it is cut into shards
                checkpoint.load_adapter(self.model, ctx.resume_from)
            shard(self.model, self.rank, self.world, self.device)
            self._decoder, self._head = None, None
        else:
            if self.world > 1:
                for p in self.model.parameters():  # the same starting adapter on every rank
                    if p.requires_grad:
                        torch.distributed.broadcast(p.data, src=0)
            self._decoder, self._head = split_head(self.model, self.device)
        if self.world > 1:
            torch.manual_seed(spec.seed * 1009 + self.rank)  # each rank its own dropout masks
        self._trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.token_budget = config.max_tokens_per_forward or self._auto_token_budget()
        self.optimizer = torch.optim.AdamW(self._trainable, lr=spec.learning_rate, weight_decay=spec.weight_decay)
        from transformers import get_scheduler

        self.scheduler = get_scheduler(
            config.lr_scheduler,
            self.optimizer,
            num_warmup_steps=math.ceil(spec.warmup_ratio * self.total_steps),
            num_training_steps=self.total_steps,
        )
        if ctx.resume_from is not None:
            self._load_checkpoint(ctx.resume_from)

    # -- setup --
    # -- setup --

    def _auto_token_budget(self) -> int:
        """Tokens per forward pass whose saved activations fit a quarter of the memory available at start."""
        per_token = self._per_token_ckpt if self.checkpointing else self._per_token
        return int(min(max(self._available // 4 // per_token, 256), 4096))

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if not self.cfg.autocast_bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    # -- data --

    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        """Batches of one epoch: a shuffle seeded by seed + epoch, so a resumed run replays it exactly."""
        if self._epoch_cache is None or self._epoch_cache[0] != epoch:
            group = self.cfg.group_by_length and not self.cfg.padding_free
            b = shuffled_batches(self.lengths, self.ctx.spec.batch_size, self.ctx.spec.seed + epoch, group)
            self._epoch_cache = (epoch, b)
        return self._epoch_cache[1]

    def _split(self, items: list[Tokenized]) -> list[list[Tokenized]]:
        """Consecutive groups of whole examples within the token budget (padded rows count at their longest)."""
        budget, widest = self.token_budget, 0
        parts: list[list[Tokenized]] = []
        cur: list[Tokenized] = []
        for e in items:
            n = len(e.input_ids)
            size = (len(cur) + 1) * max(widest, n) if not self.cfg.padding_free else widest + n
            if cur and size > budget:
                parts.append(cur)
                cur, widest = [], 0
            cur.append(e)
            widest = widest + n if self.cfg.padding_free else max(widest, n)
        parts.append(cur)
        return parts

    def _collate(self, items: list[Tokenized]) -> dict[str, Any]:
        if self.cfg.padding_free:
            batch: dict[str, Any] = collate_padding_free(items)
        else:
            pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
            batch = collate_padded(items, pad)
        return {k: v.to(self.device) for k, v in batch.items()}

    def _loss_sums(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Summed token cross-entropy and correct argmax count over the trained positions of one micro-batch.

        Only trained positions are projected onto the vocabulary (the head is a fifth of a 135M model's FLOPs,
        wasted on prompt tokens), through the chunked frozen-head loss when the architecture allows.
        """
        labels = batch["labels"]
        targets = labels[:, 1:]
        keep = torch.zeros_like(labels, dtype=torch.bool)
        keep[:, :-1] = targets != IGNORE_INDEX
        gold = targets[targets != IGNORE_INDEX]
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        if self.cfg.padding_free:
            inputs["tunery_segments"] = segment_bounds(batch["position_ids"])
        with self._autocast():
            if self._decoder is not None and self._head is not None:
                hidden = self._decoder(**inputs, use_cache=False).last_hidden_state
                loss, correct = head_loss(hidden[keep], self._head, gold)
                return loss, correct, int(gold.numel())
            out = self.model(**inputs, use_cache=False, logits_to_keep=keep)
        logits = out.logits.float().reshape(-1, out.logits.shape[-1])
        loss = F.cross_entropy(logits, gold, reduction="sum")
        correct = (logits.detach().argmax(-1) == gold).sum()
        return loss, correct, int(gold.numel())

    # -- checkpoints --

    def checkpoint_state(self) -> dict[str, Any]:
        """trainer_state.json: enough to continue exactly where this step left off."""
        epoch, in_epoch = divmod(self.step, self.steps_per_epoch)
        return {
            "backend": "peft",
            "step": self.step,
            "total_steps": self.total_steps,
            "steps_per_epoch": self.steps_per_epoch,
            "epoch": self.step / self.steps_per_epoch,
            # the next batch: epoch `epoch` (shuffled with seed + epoch), batch index `batch`
            "data": {
                "epoch": epoch,
                "batch": in_epoch * self.ctx.spec.gradient_accumulation_steps,
                "seed": self.ctx.spec.seed,
                "examples": len(self.train_set),
            },
            "trained_tokens": self.trained_tokens,
            "loss_sum": self.loss_sum,
            "token_budget": self.token_budget,
            "valid": asdict(self.valid) if self.valid else None,
            "world_size": self.world,
        }

    def _save_checkpoint(self) -> Path:
        path = self.ctx.output_dir / "checkpoints" / f"step-{self.step:06d}"
        adapter, opt_tensors = None, None
        if self.fsdp:  # gathered on every rank (a collective), written by rank 0
            adapter = full_trainable(self.model)
            opt_tensors = checkpoint.full_optimizer_state(self.optimizer, self._trainable)
        if self.rank == 0:
            checkpoint.write(
                path, self.model, self.optimizer, self.scheduler, self.checkpoint_state(), adapter, opt_tensors
            )
            self.ctx.reporter.on_checkpoint(CheckpointInfo(self.step, self.step / self.steps_per_epoch, path))
        if self.world > 1:
            self._barrier()
        return path

    def _load_checkpoint(self, path: Path) -> None:
        state = checkpoint.read_state(path, (self.total_steps, len(self.train_set), self.ctx.spec.seed))
        if not self.fsdp:  # under FSDP the adapter went in before sharding
            checkpoint.load_adapter(self.model, path)
        checkpoint.load_training_state(path, self.optimizer, self.scheduler, self._trainable, self.fsdp)
        if self.rank > 0:  # the checkpoint holds rank 0's generator; the others draw their own masks again
            torch.manual_seed(self.ctx.spec.seed * 1009 + self.rank + 7919 * int(state["step"]))
        self.step = int(state["step"])
        self.trained_tokens = int(state["trained_tokens"])
        self.loss_sum = float(state["loss_sum"])
        if not self.cfg.max_tokens_per_forward and state.get("token_budget"):
            # The same passes as before the interruption: dropout masks and sums then match bit for bit.
            self.token_budget = int(state["token_budget"])
        self.valid = ValidationMetrics(**state["valid"]) if state.get("valid") else None

    # -- evaluation --

    @torch.no_grad()
    def _evaluate(self) -> ValidationMetrics:
        self.model.eval()
        loss_sum, correct, count = 0.0, 0, 0
        bs = self.ctx.spec.batch_size
        mine = self.valid_set[self.rank :: self.world]
        passes = [self._collate(part) for i in range(0, len(mine), bs) for part in self._split(mine[i : i + bs])]
        for m in passes:
            loss, ok, n = self._loss_sums(m)
            loss_sum, correct, count = loss_sum + float(loss), correct + int(ok), count + n
        for m in self._empty_passes(len(passes)):
            self._loss_sums(m)
        if self.world > 1:
            loss_sum, correct_all, count_all = self._sum_across_ranks(loss_sum, correct, count)
            correct, count = int(correct_all), int(count_all)
        self.model.train()
        self.valid = ValidationMetrics(self.step, loss_sum / max(count, 1), correct / max(count, 1))
        self.ctx.reporter.on_validation(self.valid)
        return self.valid

    # -- the loop --

    def _train_step(self) -> tuple[float, int, float]:
        """One optimizer step; (mean token loss, tokens processed, learning rate used)."""
        spec = self.ctx.spec
        epoch, in_epoch = divmod(self.step, self.steps_per_epoch)
        ga = spec.gradient_accumulation_steps
        # With several ranks each takes every world-th example of every batch of the step.
        idx = [b[self.rank :: self.world] for b in self._epoch_batches(epoch)[in_epoch * ga : (in_epoch + 1) * ga]]
        micro = [self._collate(part) for b in idx if b for part in self._split([self.train_set[i] for i in b])]
        # Normalise by the trained tokens of the whole step, so accumulation equals one big batch.
        n_trained = sum(int((m["labels"][:, 1:] != IGNORE_INDEX).sum()) for m in micro)
        tokens = sum(len(self.train_set[i].input_ids) for b in idx for i in b)
        if self.world > 1:
            n_trained_all, _ = self._sum_across_ranks(n_trained, 0)
            n_trained = int(n_trained_all)
        n_trained = max(n_trained, 1)
        # FSDP averages gradients over the ranks; the sum is wanted (normalised by the whole step's tokens above).
        scale = self.world / n_trained if self.fsdp else 1 / n_trained
        total = 0.0
        for m in micro:
            loss, _, _ = self._loss_sums(m)
            (loss * scale).backward()
            total += float(loss.detach())
        for m in self._empty_passes(len(micro)):
            loss, _, _ = self._loss_sums(m)
            (loss * 0.0).backward()
        if self.world > 1:
            if not self.fsdp:  # FSDP reduced them in the backward pass
                self._sum_gradients()
            total, tokens_all = self._sum_across_ranks(total, tokens)
            tokens = int(tokens_all)
        if self.cfg.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self._trainable, self.cfg.max_grad_norm)
        lr = float(self.optimizer.param_groups[0]["lr"])
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return total / n_trained, tokens, lr

    # -- several ranks --

    def _sum_across_ranks(self, *values: float) -> list[float]:
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(t)
        return t.tolist()

    def _sum_gradients(self) -> None:
        """All-reduce (sum) the LoRA gradients in one flat buffer; a rank without examples adds zeros."""
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self._trainable]
        flat = torch.cat([g.reshape(-1) for g in grads])
        torch.distributed.all_reduce(flat)
        offset = 0
        for p in self._trainable:
            n = p.numel()
            p.grad = flat[offset : offset + n].view_as(p).clone()
            offset += n

    def _empty_passes(self, mine: int) -> list[dict[str, Any]]:
        """Under FSDP every rank must run as many passes as the busiest one (each pass gathers every layer):
        passes over one short example whose loss is then multiplied by 0, for the ranks with fewer."""
        if not self.fsdp:
            return []
        t = torch.tensor([mine], dtype=torch.int64, device=self.device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        short = min(self.train_set, key=lambda e: len(e.input_ids))
        return [self._collate([short]) for _ in range(int(t.item()) - mine)]

    def _barrier(self) -> None:
        torch.distributed.barrier()

    def run(self) -> TrainingResult:
        ctx, spec, rep = self.ctx, self.ctx.spec, self.ctx.reporter
        rep.on_start(self.total_steps, self.step)
        self.model.train()
        outcome: Outcome = "completed"
        window_loss, window_tokens, window_time, window_n = 0.0, 0, 0.0, 0
        step_times: list[float] = []
        while self.step < self.total_steps:
            t0 = time.perf_counter()
            loss, tokens, lr = self._train_step()
            dt = time.perf_counter() - t0
            self.step += 1
            self.trained_tokens += tokens
            self.loss_sum += loss
            step_times = [*step_times[-19:], dt]
            window_loss, window_tokens, window_time, window_n = (
                window_loss + loss,
                window_tokens + tokens,
                window_time + dt,
                window_n + 1,
            )
            if window_n >= max(spec.logging_steps, 1) or self.step == self.total_steps:
                eta = (self.total_steps - self.step) * sum(step_times) / len(step_times)
                rep.on_step(
                    StepMetrics(
                        step=self.step,
                        total_steps=self.total_steps,
                        epoch=self.step / self.steps_per_epoch,
                        loss=window_loss / window_n,
                        learning_rate=lr,
                        tokens=window_tokens,  # since the previous report
                        tokens_per_second=window_tokens / window_time,
                        eta_seconds=eta,
                    )
                )
                window_loss, window_tokens, window_time, window_n = 0.0, 0, 0.0, 0
            epoch_end = self.step % self.steps_per_epoch == 0
            if self.valid_set and (epoch_end or (spec.eval_every_steps and self.step % spec.eval_every_steps == 0)):
                self._evaluate()
            saved = epoch_end or bool(spec.checkpoint_every_steps and self.step % spec.checkpoint_every_steps == 0)
            if saved:
                self._save_checkpoint()
            control = rep.control()
            if control == "cancel":
                outcome = "cancelled"
                break
            if control == "pause":
                if not saved:
                    self._save_checkpoint()
                outcome = "paused"
                break

        metrics: dict[str, float] = {"train_loss": self.loss_sum / max(self.step, 1)}
        if self.valid is not None:
            metrics.update(valid_loss=self.valid.loss, valid_token_accuracy=self.valid.token_accuracy)
        adapter_dir = None
        if outcome == "completed":
            adapter_dir = ctx.output_dir / "adapter"
            full = full_trainable(self.model) if self.fsdp else None
            if self.rank == 0:
                with atomic_dir(adapter_dir) as tmp:
                    self.model.save_pretrained(str(tmp), safe_serialization=True, state_dict=full)
                    meta = {**metrics, "steps": self.step, "processes": self.world}
                    effective = dataclasses.replace(self.cfg, grad_checkpointing=self.checkpointing)
                    write_metadata(tmp, ctx, "peft", effective, meta)
            if self.world > 1:
                self._barrier()
        return TrainingResult(outcome, self.step, self.total_steps, self.trained_tokens, adapter_dir, metrics)
