"""A trainer worker: pulls jobs from the JetStream work queue, trains with a backend plugin, reports events.

Any number of workers, on any machine that reaches NATS and the shared artifact storage, share one durable
consumer. A worker heartbeats with in_progress() while training and acks only after the result is published; a
worker that dies (even SIGKILL) stops heartbeating, so the job is redelivered and resumes from its latest complete
checkpoint. A job that fails max_deliver times ends failed. SIGTERM checkpoints the running job and hands it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
import threading
import zlib
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from tunery.models import resolve
from tunery.runtime import events
from tunery.runtime.artifacts import LocalArtifactStore
from tunery.trainer.v1 import trainer_pb2 as pb
from tunery_trainer import queue
from tunery_trainer.backends.base import (
    CheckpointInfo,
    Control,
    LoraSpec,
    Reporter,
    StepMetrics,
    TrainingContext,
    TrainingResult,
    TrainSpec,
    ValidationMetrics,
)
from tunery_trainer.backends.registry import get_backend, parse_config
from tunery_trainer.service import job_event, read_jsonl, state_event
from tunery_trainer.settings import TrainerSettings

log = logging.getLogger("tunery.trainer.worker")
COMPLETE_MARK = ".tunery-complete"


def latest_checkpoint(job_dir: Path) -> Path | None:
    """The newest checkpoint that was completely written (a marker is added only after the backend returned)."""
    ckpts = sorted((job_dir / "checkpoints").glob("step-*"))
    for path in reversed(ckpts):
        if (path / COMPLETE_MARK).exists():
            return path
    return None


def train_spec(task: pb.TrainTask) -> TrainSpec:
    spec = task.job.spec
    h = task.job.resolved_hyperparameters
    lora = spec.lora
    rank = lora.rank if lora.HasField("rank") else 16
    return TrainSpec(
        method="dpo" if spec.method == pb.METHOD_DPO else "sft",
        n_epochs=h.n_epochs,
        batch_size=h.batch_size,
        learning_rate=h.learning_rate,
        gradient_accumulation_steps=h.gradient_accumulation_steps or 1,
        max_seq_length=task.max_seq_length,
        seed=spec.seed,
        lora=LoraSpec(
            rank=rank,
            alpha=lora.alpha if lora.HasField("alpha") else 2 * rank,
            dropout=lora.dropout if lora.HasField("dropout") else 0.05,
            target_modules=tuple(lora.target_modules) or LoraSpec().target_modules,
        ),
        warmup_ratio=h.warmup_ratio,
        weight_decay=h.weight_decay,
        checkpoint_every_steps=spec.checkpoint_every_steps,
        eval_every_steps=spec.eval_every_steps,
    )


def build_context(
    task: pb.TrainTask, settings: TrainerSettings, reporter: Reporter
) -> tuple[Any, Any, TrainingContext]:
    """(backend, its parsed config, the training context) of a queued task: the same on every rank of a job."""
    from tunery_trainer.modelprep import prepare_base_model

    job = task.job
    artifacts = LocalArtifactStore(settings.artifact_root)
    backend = get_backend(job.spec.backend)
    config = parse_config(backend, json_format.MessageToDict(job.spec.backend_config))
    model_dir = prepare_base_model(resolve(task.base_model), settings.data_dir)
    train = read_jsonl(artifacts.path(task.train_file))
    valid = read_jsonl(artifacts.path(task.validation_file)) if task.validation_file else []
    job_dir = artifacts.path(f"jobs/{job.id}")
    ctx = TrainingContext(
        job_id=job.id,
        model_dir=model_dir,
        train_examples=train,
        validation_examples=valid,
        spec=train_spec(task),
        output_dir=job_dir,
        reporter=reporter,
        resume_from=latest_checkpoint(job_dir),
        metadata={
            "job_id": job.id,
            "fine_tuned_model": job.fine_tuned_model,
            "base_model": task.base_model,
            "training_data": json_format.MessageToDict(job.spec.training_data),
            "validation_data": json_format.MessageToDict(job.spec.validation_data),
            "backend": backend.name,
        },
    )
    return backend, config, ctx


class JobReporter:
    """Called from the training thread; hands events to the event loop in order and answers control()."""

    def __init__(self, worker: Worker, job_id: str, attempt: int, artifacts: LocalArtifactStore) -> None:
        self.worker = worker
        self.job_id = job_id
        self.attempt = attempt
        self.artifacts = artifacts
        self.control_flag: Control = "continue"
        self.stop_reason = ""
        self.lease = ""
        self.abandoned = False
        self.total_steps = 0

    def _send(self, ev: pb.JobEvent, kind: str, key: str) -> None:
        if self.abandoned:
            return
        event_id = f"job.{self.job_id}.a{self.attempt}.{kind}.{key}"
        self.worker.loop.call_soon_threadsafe(self.worker.outbox.put_nowait, (ev, event_id))

    def note(self, message: str) -> None:
        self._send(job_event(self.job_id, message), "note", f"{zlib.crc32(message.encode()):08x}")

    def on_start(self, total_steps: int, start_step: int) -> None:
        self.total_steps = total_steps
        what = f"resuming at step {start_step + 1}" if start_step else "starting"
        self._send(job_event(self.job_id, f"{what} of {total_steps} steps"), "start", str(start_step))

    def on_step(self, m: StepMetrics) -> None:
        step = pb.StepLog(
            step=m.step,
            total_steps=m.total_steps,
            epoch=m.epoch,
            train_loss=m.loss,
            learning_rate=m.learning_rate,
            tokens_per_second=m.tokens_per_second,
            eta_seconds=m.eta_seconds,
            tokens=m.tokens,
        )
        msg = (
            f"step {m.step}/{m.total_steps} loss {m.loss:.4f} lr {m.learning_rate:.2e} {m.tokens_per_second:.0f} tok/s"
        )
        self._send(job_event(self.job_id, msg, step=step), "step", str(m.step))

    def on_checkpoint(self, c: CheckpointInfo) -> None:
        (c.path / COMPLETE_MARK).write_text(f"{c.step}\n")
        rel = c.path.resolve().relative_to(self.artifacts.root)
        ck = pb.Checkpoint(step=c.step, epoch=c.epoch, path=str(rel))
        ck.create_time.GetCurrentTime()
        self._send(job_event(self.job_id, f"checkpoint at step {c.step}", checkpoint=ck), "checkpoint", str(c.step))

    def on_validation(self, v: ValidationMetrics) -> None:
        val = pb.Validation(step=v.step, valid_loss=v.loss, valid_token_accuracy=v.token_accuracy)
        msg = f"validation at step {v.step}: loss {v.loss:.4f}, token accuracy {v.token_accuracy:.3f}"
        self._send(job_event(self.job_id, msg, validation=val), "validation", str(v.step))

    def control(self) -> Control:
        if self.worker.stopping.is_set():
            self.stop_reason = "worker shutting down"
            return "pause"
        return self.control_flag


class Worker:
    def __init__(self, settings: TrainerSettings) -> None:
        self.settings = settings
        self.name = settings.worker_name or f"{socket.gethostname()}-{os.getpid()}"
        self.artifacts = LocalArtifactStore(settings.artifact_root)
        self.stopping = threading.Event()
        self.outbox: asyncio.Queue[tuple[pb.JobEvent, str]] = asyncio.Queue()
        self.loop = asyncio.get_event_loop()
        self.nc: NATS | None = None
        self.current: str = ""

    async def _publisher(self, pub: events.EventPublisher) -> None:
        """One publisher keeps events of a job in the order the trainer produced them."""
        while True:
            ev, event_id = await self.outbox.get()
            try:
                await pub.publish("job.event", ev.job_id, ev, event_id=event_id, attempts=20)
            except Exception:
                log.exception("event %s lost", event_id)
            finally:
                self.outbox.task_done()

    async def run(self) -> None:
        self.loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                self.loop.add_signal_handler(sig, self.stopping.set)
        self.nc = await events.connect(self.settings.nats_url, name=f"tunery-trainer-worker-{self.name}")
        js = self.nc.jetstream()
        await events.ensure_stream(self.nc)
        await queue.ensure_queue(js, ack_wait=self.settings.ack_wait_seconds, max_deliver=self.settings.max_deliver)
        self.pub = events.EventPublisher(self.nc, source=f"trainer-worker:{self.name}")
        publisher = self.loop.create_task(self._publisher(self.pub))
        sub = await js.pull_subscribe(queue.JOBS_SUBJECT, durable=queue.CONSUMER, stream=queue.JOBS_STREAM)
        log.info("worker %s waiting for jobs on %s", self.name, self.settings.nats_url)
        print(f"trainer worker {self.name} ready", flush=True)
        while not self.stopping.is_set():
            try:
                msgs = await sub.fetch(1, timeout=1)
            except TimeoutError:
                continue
            except Exception as err:
                log.warning("fetch failed: %s", err)
                await asyncio.sleep(0.5)
                continue
            for msg in msgs:
                await self.handle(msg)
        await self.outbox.join()
        publisher.cancel()
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
        await self.nc.drain()

    async def _emit(self, ev: pb.JobEvent, event_id: str) -> None:
        await self.outbox.put((ev, event_id))
        await self.outbox.join()

    async def handle(self, msg: Msg) -> None:
        task = pb.TrainTask()
        task.ParseFromString(msg.data)
        job = task.job
        js = self.nc.jetstream()  # type: ignore[union-attr]
        flag = await queue.get_control(js, job.id)
        if flag.generation > task.generation or flag.action in ("cancel", "pause"):
            log.info("skipping %s (generation %d, control %s)", job.id, task.generation, flag)
            await msg.ack()
            return
        attempt = msg.metadata.num_delivered or 1
        key = f"{job.id}.g{task.generation}.a{attempt}"
        reporter = JobReporter(self, job.id, attempt, self.artifacts)
        reporter.attempt = int(f"{task.generation}{attempt:03d}")
        reporter.lease = f"{self.name}/{key}"
        await queue.take_lease(js, job.id, reporter.lease)
        start = state_event(job.id, "queued", "running", f"worker {self.name} picked it up (attempt {attempt})")
        start.state_change.worker = self.name
        await self._emit(start, f"job.{key}.running")
        self.current = job.id
        heartbeat = self.loop.create_task(self._heartbeat(msg, reporter, job.id))
        try:
            result = await asyncio.to_thread(self._train, task, reporter)
        except Exception as err:
            heartbeat.cancel()
            await self._failed(msg, task, attempt, err, key)
            return
        finally:
            heartbeat.cancel()
            self.current = ""
        if reporter.abandoned:
            log.warning("job %s went to another worker while this one was cut off; dropping this run", job.id)
            return
        await self._finished(msg, task, result, reporter, key)

    async def _heartbeat(self, msg: Msg, reporter: JobReporter, job_id: str) -> None:
        interval = self.settings.heartbeat_seconds or self.settings.ack_wait_seconds / 4
        js = self.nc.jetstream()  # type: ignore[union-attr]
        while True:
            await asyncio.sleep(min(interval, 1.0))
            try:
                holder = await queue.lease_holder(js, job_id)
                if holder and holder != reporter.lease:
                    # The job was redelivered (this worker lost NATS for longer than ack_wait): stop, publish nothing.
                    reporter.abandoned = True
                    reporter.control_flag = "cancel"
                    return
                flag = await queue.get_control(js, job_id)
                if flag.action != "run" and reporter.control_flag == "continue":
                    log.info("job %s: %s requested", job_id, flag.action)
                if flag.action == "cancel":
                    reporter.control_flag = "cancel"
                elif flag.action == "pause":
                    reporter.control_flag = "pause"
                await msg.in_progress()
            except Exception as err:
                log.warning("heartbeat for %s failed: %s", job_id, err)

    def _train(self, task: pb.TrainTask, reporter: JobReporter) -> TrainingResult:
        from tunery_trainer import launch

        backend, config, ctx = build_context(task, self.settings, reporter)
        nprocs = launch.processes_for(self.settings.processes_per_job)
        if nprocs > 1 and getattr(backend, "distributed", False):
            reporter.note(f"training on {nprocs} processes (torchrun, {'nccl' if launch.visible_gpus() else 'gloo'})")
            launch_dir = ctx.output_dir / "launch" / str(reporter.attempt)
            return launch.run_distributed(task.SerializeToString(), reporter, launch_dir, nprocs)
        if nprocs > 1:
            reporter.note(f"the {backend.name} backend trains in one process; {nprocs - 1} of {nprocs} stay idle")
        return backend.train(ctx, config)

    async def _finished(self, msg: Msg, task: pb.TrainTask, r: TrainingResult, rep: JobReporter, key: str) -> None:
        job_id = task.job.id
        if r.outcome == "completed":
            assert r.adapter_dir is not None
            ev = state_event(job_id, "running", "succeeded", f"trained {r.steps} steps")
            sc = ev.state_change
            sc.adapter_path = str(r.adapter_dir.resolve().relative_to(self.artifacts.root))
            sc.trained_tokens = r.trained_tokens
            sc.metrics.CopyFrom(
                pb.Metrics(
                    train_loss=r.metrics.get("train_loss", 0.0),
                    valid_loss=r.metrics.get("valid_loss", 0.0),
                    valid_token_accuracy=r.metrics.get("valid_token_accuracy", 0.0),
                )
            )
            await self._emit(ev, f"job.{key}.succeeded")
            await msg.ack_sync()
        elif r.outcome == "paused" and rep.stop_reason == "worker shutting down":
            await self._emit(
                job_event(
                    job_id, f"worker {self.name} stopping; the job goes back to the queue at step {r.steps}", "warning"
                ),
                f"job.{key}.handback",
            )
            await msg.nak()
        else:
            what = "cancelled" if r.outcome == "cancelled" else "paused"
            await self._emit(
                job_event(job_id, f"worker stopped the job ({what}) at step {r.steps}; checkpoints kept"),
                f"job.{key}.{what}",
            )
            await msg.ack_sync()

    async def _failed(self, msg: Msg, task: pb.TrainTask, attempt: int, err: Exception, key: str) -> None:
        job_id = task.job.id
        code = "disk_full" if _disk_full(err) else "training_error"
        message = f"{type(err).__name__}: {err}"
        if code == "disk_full":
            message = (
                f"the disk is full while writing to {getattr(err, 'filename', '') or 'the artifact store'}; "
                "earlier checkpoints are intact; free space and resume"
            )
        log.error("job %s attempt %d failed: %s", job_id, attempt, message, exc_info=err)
        if attempt < self.settings.max_deliver and code != "disk_full":
            await self._emit(
                job_event(job_id, f"attempt {attempt} failed ({message}); retrying", "warning"), f"job.{key}.retry"
            )
            await msg.nak(delay=1)
            return
        ev = state_event(job_id, "running", "failed", message, pb.JobError(code=code, message=message))
        await self._emit(ev, f"job.{key}.failed")
        await msg.ack_sync()


def _disk_full(err: BaseException | None) -> bool:
    """ENOSPC anywhere in the chain (libraries such as safetensors wrap the OSError)."""
    seen = 0
    while err is not None and seen < 10:
        if getattr(err, "errno", None) == errno.ENOSPC:  # OSError, or a training process's error relayed
            return True
        if "No space left on device" in str(err):
            return True
        err = err.__cause__ or err.__context__
        seen += 1
    return False


async def main_async(settings: TrainerSettings) -> None:
    await Worker(settings).run()


def main() -> None:
    settings = TrainerSettings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(main_async(settings))


if __name__ == "__main__":
    main()
