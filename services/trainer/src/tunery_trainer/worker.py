"""A trainer worker: pulls jobs from the JetStream work queue, trains with a backend plugin, reports events.

Any number of workers, on any machine that reaches NATS and the shared artifact storage, share one durable
consumer. A worker heartbeats with in_progress() while training and acks only after the result is published; a
worker that dies (even SIGKILL) stops heartbeating, so the job is redelivered and resumes from its latest complete
checkpoint. A job that fails max_deliver times ends failed. SIGTERM checkpoints the running job and hands it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import logging
import os
import signal
import socket
import threading
import zlib
from pathlib import Path
from typing import Any

import orjson
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from tunery.models import resolve
from tunery.runtime import events
from tunery.runtime.artifacts import LocalArtifactStore
from tunery.runtime.consumer import LEAVE, Nak, Outcome, PullConsumer
from tunery.weights import base_model_folder
from tunery_trainer import queue, wire
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
from tunery_trainer.domain import (
    Checkpoint,
    JobError,
    JobEvent,
    Metrics,
    StepLog,
    TrainTask,
    Validation,
    job_event,
    state_event,
)
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


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open("rb") as fh:
        return [orjson.loads(line) for line in fh if line.strip()]


def train_spec(task: TrainTask) -> TrainSpec:
    spec, h, lora = task.spec, task.hyperparameters, task.spec.lora
    rank = lora.rank if lora.rank is not None else 16
    return TrainSpec(
        method=spec.method,
        n_epochs=h.n_epochs,
        batch_size=h.batch_size,
        learning_rate=h.learning_rate,
        gradient_accumulation_steps=h.gradient_accumulation_steps or 1,
        max_seq_length=task.max_seq_length,
        seed=spec.seed,
        lora=LoraSpec(
            rank=rank,
            alpha=lora.alpha if lora.alpha is not None else 2 * rank,
            dropout=lora.dropout if lora.dropout is not None else 0.05,
            target_modules=tuple(lora.target_modules) or LoraSpec().target_modules,
        ),
        warmup_ratio=h.warmup_ratio,
        weight_decay=h.weight_decay,
        checkpoint_every_steps=spec.checkpoint_every_steps,
        eval_every_steps=spec.eval_every_steps,
    )


def build_context(task: TrainTask, settings: TrainerSettings, reporter: Reporter) -> tuple[Any, Any, TrainingContext]:
    """(backend, its parsed config, the training context) of a queued task: the same on every rank of a job."""
    artifacts = LocalArtifactStore(settings.artifact_root)
    spec = task.spec
    backend = get_backend(spec.backend)
    config = parse_config(backend, spec.backend_config)
    model_dir = base_model_folder(resolve(task.base_model), settings.data_dir)
    train = read_jsonl(artifacts.path(task.train_file))
    valid = read_jsonl(artifacts.path(task.validation_file)) if task.validation_file else []
    job_dir = artifacts.path(f"jobs/{task.job_id}")
    ctx = TrainingContext(
        job_id=task.job_id,
        model_dir=model_dir,
        train_examples=train,
        validation_examples=valid,
        spec=train_spec(task),
        output_dir=job_dir,
        reporter=reporter,
        resume_from=latest_checkpoint(job_dir),
        metadata={
            "job_id": task.job_id,
            "fine_tuned_model": task.fine_tuned_model,
            "base_model": task.base_model,
            "training_data": dataclasses.asdict(spec.training_data),
            "validation_data": dataclasses.asdict(spec.validation_data) if spec.validation_data else {},
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

    def _send(self, ev: JobEvent, kind: str, key: str) -> None:
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
        step = StepLog(
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
        self._send(job_event(self.job_id, msg, data=step), "step", str(m.step))

    def on_checkpoint(self, c: CheckpointInfo) -> None:
        (c.path / COMPLETE_MARK).write_text(f"{c.step}\n")
        rel = c.path.resolve().relative_to(self.artifacts.root)
        ck = Checkpoint(step=c.step, epoch=c.epoch, path=str(rel))
        self._send(job_event(self.job_id, f"checkpoint at step {c.step}", data=ck), "checkpoint", str(c.step))

    def on_validation(self, v: ValidationMetrics) -> None:
        val = Validation(step=v.step, valid_loss=v.loss, valid_token_accuracy=v.token_accuracy)
        msg = f"validation at step {v.step}: loss {v.loss:.4f}, token accuracy {v.token_accuracy:.3f}"
        self._send(job_event(self.job_id, msg, data=val), "validation", str(v.step))

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
        self.outbox: asyncio.Queue[tuple[JobEvent, str]] = asyncio.Queue()
        self.loop = asyncio.get_event_loop()
        self.nc: NATS | None = None
        self.current: str = ""
        self.reporter: JobReporter | None = None  # of the job being trained
        self.consumer: PullConsumer | None = None

    async def _publisher(self, pub: wire.EventPublisher) -> None:
        """One publisher keeps events of a job in the order the trainer produced them."""
        while True:
            ev, event_id = await self.outbox.get()
            try:
                await pub.publish(ev, event_id, attempts=20)
            except Exception:
                log.exception("event %s lost", event_id)
            finally:
                self.outbox.task_done()

    def _stop(self) -> None:
        self.stopping.set()  # the training thread sees it in control() and hands the job back
        if self.consumer is not None:
            self.consumer.request_stop()

    async def run(self) -> None:
        self.loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                self.loop.add_signal_handler(sig, self._stop)
        self.nc = await events.connect(self.settings.nats_url, name=f"tunery-trainer-worker-{self.name}")
        js = self.nc.jetstream()
        await events.ensure_stream(self.nc)
        s = self.settings
        self.jobs = queue.JobQueue(js)
        await self.jobs.ensure(ack_wait=s.ack_wait_seconds, max_deliver=s.max_deliver)
        self.consumer = PullConsumer(
            js,
            queue.JOBS_STREAM,
            queue.consumer_config(ack_wait=s.ack_wait_seconds, max_deliver=s.max_deliver),
            self.handle,
            batch=1,
            fetch_timeout=1.0,
            heartbeat=min(s.heartbeat_seconds or s.ack_wait_seconds / 4, 1.0),
            on_heartbeat=self._heartbeat,
            sync_ack=True,
        )
        if self.stopping.is_set():
            self.consumer.request_stop()
        pub = wire.EventPublisher(self.nc, source=f"trainer-worker:{self.name}")
        publisher = self.loop.create_task(self._publisher(pub))
        await self.consumer.subscribe()
        log.info("worker %s waiting for jobs on %s", self.name, self.settings.nats_url)
        print(f"trainer worker {self.name} ready", flush=True)
        await self.consumer.run()
        await self.outbox.join()
        publisher.cancel()
        await self.consumer.unsubscribe()
        await self.nc.drain()

    async def _emit(self, ev: JobEvent, event_id: str) -> None:
        await self.outbox.put((ev, event_id))
        await self.outbox.join()

    async def handle(self, msg: Msg) -> Outcome:
        task = wire.decode_task(msg.data)
        job_id = task.job_id
        flag = await self.jobs.get_control(job_id)
        if flag.generation > task.generation or flag.action in ("cancel", "pause"):
            log.info("skipping %s (generation %d, control %s)", job_id, task.generation, flag)
            return None
        attempt = msg.metadata.num_delivered or 1
        key = f"{job_id}.g{task.generation}.a{attempt}"
        reporter = JobReporter(self, job_id, int(f"{task.generation}{attempt:03d}"), self.artifacts)
        reporter.lease = f"{self.name}/{key}"
        await self.jobs.take_lease(job_id, reporter.lease)
        reason = f"worker {self.name} picked it up (attempt {attempt})"
        await self._emit(state_event(job_id, "queued", "running", reason, worker=self.name), f"job.{key}.running")
        self.current, self.reporter = job_id, reporter
        try:
            result = await asyncio.to_thread(self._train, task, reporter)
        except Exception as err:
            return await self._failed(task, attempt, err, key)
        finally:
            self.current, self.reporter = "", None
        if reporter.abandoned:
            log.warning("job %s went to another worker while this one was cut off; dropping this run", job_id)
            return LEAVE
        return await self._finished(task, result, reporter, key)

    async def _heartbeat(self, msg: Msg) -> bool:
        """Before each in_progress(): is the job still ours, and was it cancelled or paused? False: stop beating."""
        reporter = self.reporter
        if reporter is None:
            return True
        job_id = reporter.job_id
        holder = await self.jobs.lease_holder(job_id)
        if holder and holder != reporter.lease:
            # The job was redelivered (this worker lost NATS for longer than ack_wait): stop, publish nothing.
            reporter.abandoned = True
            reporter.control_flag = "cancel"
            return False
        flag = await self.jobs.get_control(job_id)
        if flag.action != "run" and reporter.control_flag == "continue":
            log.info("job %s: %s requested", job_id, flag.action)
        if flag.action == "cancel":
            reporter.control_flag = "cancel"
        elif flag.action == "pause":
            reporter.control_flag = "pause"
        return True

    def _train(self, task: TrainTask, reporter: JobReporter) -> TrainingResult:
        from tunery_trainer import launch

        backend, config, ctx = build_context(task, self.settings, reporter)
        nprocs = launch.processes_for(self.settings.processes_per_job)
        if nprocs > 1 and getattr(backend, "distributed", False):
            reporter.note(f"training on {nprocs} processes (torchrun, {'nccl' if launch.visible_gpus() else 'gloo'})")
            launch_dir = ctx.output_dir / "launch" / str(reporter.attempt)
            return launch.run_distributed(wire.encode_task(task), reporter, launch_dir, nprocs)
        if nprocs > 1:
            reporter.note(f"the {backend.name} backend trains in one process; {nprocs - 1} of {nprocs} stay idle")
        return backend.train(ctx, config)

    async def _finished(self, task: TrainTask, r: TrainingResult, rep: JobReporter, key: str) -> Outcome:
        job_id = task.job_id
        if r.outcome == "completed":
            assert r.adapter_dir is not None
            metrics = Metrics(
                train_loss=r.metrics.get("train_loss", 0.0),
                valid_loss=r.metrics.get("valid_loss", 0.0),
                valid_token_accuracy=r.metrics.get("valid_token_accuracy", 0.0),
            )
            ev = state_event(
                job_id,
                "running",
                "succeeded",
                f"trained {r.steps} steps",
                adapter_path=str(r.adapter_dir.resolve().relative_to(self.artifacts.root)),
                trained_tokens=r.trained_tokens,
                metrics=metrics,
                fine_tuned_model=task.fine_tuned_model,
                base_model=task.base_model,
            )
            await self._emit(ev, f"job.{key}.succeeded")
            return None
        if r.outcome == "paused" and rep.stop_reason == "worker shutting down":
            message = f"worker {self.name} stopping; the job goes back to the queue at step {r.steps}"
            await self._emit(job_event(job_id, message, "warning"), f"job.{key}.handback")
            return Nak()
        what = "cancelled" if r.outcome == "cancelled" else "paused"
        message = f"worker stopped the job ({what}) at step {r.steps}; checkpoints kept"
        await self._emit(job_event(job_id, message), f"job.{key}.{what}")
        return None

    async def _failed(self, task: TrainTask, attempt: int, err: Exception, key: str) -> Outcome:
        job_id = task.job_id
        code = "disk_full" if _disk_full(err) else "training_error"
        message = f"{type(err).__name__}: {err}"
        if code == "disk_full":
            message = (
                f"the disk is full while writing to {getattr(err, 'filename', '') or 'the artifact store'}; "
                "earlier checkpoints are intact; free space and resume"
            )
        log.error("job %s attempt %d failed: %s", job_id, attempt, message, exc_info=err)
        if attempt < self.settings.max_deliver and code != "disk_full":
            retry = f"attempt {attempt} failed ({message}); retrying"
            await self._emit(job_event(job_id, retry, "warning"), f"job.{key}.retry")
            return Nak(delay=1)
        ev = state_event(job_id, "running", "failed", message, error=JobError(code=code, message=message))
        await self._emit(ev, f"job.{key}.failed")
        return None


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
