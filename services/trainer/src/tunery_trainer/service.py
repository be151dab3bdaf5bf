"""Trainer domain logic: validate and resolve job specs, snapshot their data, queue, control, follow events.

Works on domain objects only (domain.py); the servicer (server.py) converts protobuf at the edge, the dataset
service is a `DatasetClient`, events go to an `EventSink`, queued jobs to a `WorkQueue` (all Protocols in domain.py;
their NATS and gRPC implementations are wire.py, queue.py and datasetclient.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import orjson

from tunery.errors import FailedPrecondition, InvalidArgument, NotFound, TuneryError
from tunery.models import model_label, resolve
from tunery.runtime.artifacts import LocalArtifactStore
from tunery.split import split_examples, validation_count
from tunery_trainer import catalog, specs, states
from tunery_trainer.backends.registry import DEFAULT_BACKEND
from tunery_trainer.domain import (
    BackendInfo,
    BaseModelInfo,
    Checkpoint,
    ControlFlag,
    DatasetClient,
    DatasetRef,
    DatasetVersion,
    EvaluatorClient,
    EventSink,
    Job,
    JobError,
    JobEvaluation,
    JobEvent,
    JobSpec,
    StateChange,
    TrainTask,
    WorkQueue,
    job_event,
    now,
    state_event,
)
from tunery_trainer.evaluation import JobEvaluations, due
from tunery_trainer.settings import TrainerSettings
from tunery_trainer.store import JobStore, new_job_id

log = logging.getLogger("tunery.trainer")
T = TypeVar("T")


def split_file(artifacts: LocalArtifactStore, base: str, fraction: float, seed: int) -> tuple[int, int]:
    """Split `<base>/train.jsonl` into itself and `<base>/validation.jsonl` with `tunery.split`, as the dataset
    service splits a version: by the examples' content, the seed and the fraction, so the same file splits the same
    way however often it is uploaded. Returns the (train, validation) sizes."""
    lines = [line for line in artifacts.path(f"{base}/train.jsonl").read_bytes().splitlines() if line.strip()]
    train_idx, val_idx = split_examples([orjson.loads(line) for line in lines], fraction, seed)
    artifacts.put_bytes(f"{base}/validation.jsonl", b"".join(lines[i] + b"\n" for i in val_idx))
    artifacts.put_bytes(f"{base}/train.jsonl", b"".join(lines[i] + b"\n" for i in train_idx))
    return len(train_idx), len(val_idx)


class TrainerService:
    def __init__(
        self,
        settings: TrainerSettings,
        store: JobStore,
        events: EventSink,
        queue: WorkQueue,
        dataset: DatasetClient,
        evaluator: EvaluatorClient,
    ) -> None:
        self.settings = settings
        self.store = store
        self.events = events
        self.queue = queue
        self.dataset = dataset
        self.artifacts = LocalArtifactStore(settings.artifact_root)
        self._tasks: set[asyncio.Task[None]] = set()
        self._waiters: dict[str, list[asyncio.Event]] = defaultdict(list)
        self.evaluations = JobEvaluations(settings, store, evaluator, self.publish, self._spawn)

    async def _run(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        return await asyncio.to_thread(fn, *args, **kw)

    async def publish(self, ev: JobEvent, event_id: str = "") -> None:
        await self.events.publish(ev, event_id or f"job.{ev.job_id}.svc.{uuid.uuid4().hex}")

    # ---- the dataset service ----------------------------------------------------------------------------------------
    async def _dataset(self, call: Awaitable[T], field: str) -> T:
        """The caller's mistakes (no such dataset, a draft, ...) name the spec field they came from."""
        try:
            return await call
        except (NotFound, InvalidArgument, FailedPrecondition) as err:
            err.field = field
            raise

    async def _check_version(self, ref: DatasetRef, field: str) -> DatasetVersion:
        if not ref.dataset:
            raise InvalidArgument(
                f"field '{field}.dataset' is required", code="missing_field", field=f"{field}.dataset"
            )
        if ref.version <= 0:
            raise InvalidArgument(
                f"{field}.version must name a frozen version (>= 1); drafts change, so jobs only train on versions. "
                f"Freeze the draft first: tunery datasets freeze {ref.dataset}",
                code="draft_not_allowed",
                field=f"{field}.version",
            )
        return await self._dataset(self.dataset.get_version(ref.dataset, ref.version), f"{field}.version")

    # ---- create -----------------------------------------------------------------------------------------------------
    async def create_job(self, spec: JobSpec) -> tuple[Job, bool]:
        """Check the spec against the model, the backend and the dataset version, store the job and start
        snapshotting its data; (job, existing) where existing means an earlier job with the same idempotency key."""
        if spec.idempotency_key:
            found = await self._run(self.store.find_by_key, spec.idempotency_key)
            if found is not None:
                return found, True
        model = resolve(spec.base_model, field="base_model")
        max_len = specs.check_static(spec, model)
        train_v = await self._check_version(spec.training_data, "training_data")
        if spec.method == "dpo" and train_v.format != "preference":
            raise InvalidArgument(
                f"method dpo needs preference examples; version {train_v.number} holds {train_v.format} examples",
                code="format_mismatch",
                field="training_data",
            )
        if spec.method != "dpo" and train_v.format == "preference":
            raise InvalidArgument(
                "preference examples train with method dpo, not sft", code="format_mismatch", field="method"
            )
        n_train = train_v.example_count
        if spec.validation_data is not None:
            if spec.validation_split:
                raise InvalidArgument(
                    "give validation_data or validation_split, not both",
                    code="conflicting_fields",
                    field="validation_split",
                )
            await self._check_version(spec.validation_data, "validation_data")
        elif spec.validation_split:
            specs.check_validation_split(spec.validation_split)
            n_train = n_train - validation_count(n_train, spec.validation_split) if n_train >= 2 else 0
        if train_v.example_count == 0:
            raise FailedPrecondition(
                f"version {train_v.number} of dataset {spec.training_data.dataset!r} is empty",
                code="empty_dataset",
                field="training_data",
            )
        if n_train < self.settings.min_examples:
            raise FailedPrecondition(
                f"training needs at least {self.settings.min_examples} examples; version {train_v.number} of "
                f"{spec.training_data.dataset!r} gives {n_train}",
                code="too_few_examples",
                field="training_data",
            )
        resolved = specs.resolve_hyperparameters(spec.hyperparameters, n_train)
        specs.check_lora(spec.lora)
        eval_warning = await self.evaluations.check(spec)

        job_id = new_job_id()
        label = model_label(model)
        stored = dataclasses.replace(
            spec, base_model=model.name, backend=spec.backend or DEFAULT_BACKEND, max_seq_length=max_len
        )
        job, existing = await self._run(
            self.store.create,
            Job(
                id=job_id,
                state="validating_files",
                spec=stored,
                hyperparameters=resolved,
                base_model=model.name,
                dataset_id=train_v.dataset_id,
                dataset_version=train_v.number,
                fine_tuned_model=f"ft:{label}:{spec.suffix}:{job_id}",
                idempotency_key=spec.idempotency_key or None,
                created_at=now(),
            ),
        )
        if existing:
            return job, True
        await self.publish(state_event(job.id, "", "validating_files", "job created"), f"job.{job.id}.created")
        if eval_warning:
            await self.publish(job_event(job.id, eval_warning, "warning"), f"job.{job.id}.evaluation.unchecked")
        self._spawn(self._prepare(job.id))
        return job, False

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- validating_files -> queued ---------------------------------------------------------------------------------
    async def _export(self, ref: DatasetRef, key: str) -> int:
        lines = 0
        with self.artifacts.writer(key) as fh:
            async for chunk in self.dataset.export(ref.dataset, ref.version):
                fh.write(chunk)
                lines += chunk.count(b"\n")
        return lines

    async def _prepare(self, job_id: str) -> None:
        """Snapshot the data into shared artifacts (workers need only NATS and storage), then queue the job."""
        job = await self._run(self.store.get, job_id)
        spec = job.spec
        base = f"jobs/{job_id}/data"
        try:
            ref = spec.training_data
            await self._dataset(
                self.dataset.set_reference(ref.dataset, ref.version, f"job:{job_id}", add=True), "training_data"
            )
            n_train = await self._export(ref, f"{base}/train.jsonl")
            n_val = 0
            val_key = ""
            if spec.validation_data is not None:
                val_key = f"{base}/validation.jsonl"
                n_val = await self._export(spec.validation_data, val_key)
            elif spec.validation_split:
                val_key = f"{base}/validation.jsonl"
                n_train, n_val = await self._run(split_file, self.artifacts, base, spec.validation_split, spec.seed)
            current = await self._run(self.store.get, job_id)
            if current.state != "validating_files":  # cancelled meanwhile
                return
            await self._run(
                self.store.update,
                job_id,
                train_file=f"{base}/train.jsonl",
                validation_file=val_key,
                train_examples=n_train,
                validation_examples=n_val,
            )
            await self.queue_job(job_id, "validating_files", "files validated and snapshotted")
        except TuneryError as err:
            await self.fail(job_id, err.code, err.message, err.field)
        except Exception as err:
            log.exception("preparing %s failed", job_id)
            await self.fail(job_id, "prepare_failed", f"preparing the job failed: {type(err).__name__}: {err}", "")

    async def queue_job(self, job_id: str, expected: str, reason: str) -> Job:
        generation = (await self._run(self.store.get, job_id)).generation + 1
        old, job = await self._run(
            self.store.transition, job_id, "queued", allowed_from=[expected], action="queue", generation=generation
        )
        await self.queue.set_control(job_id, ControlFlag("run", job.generation))
        await self.queue.enqueue(
            TrainTask(
                job_id=job.id,
                spec=job.spec,
                hyperparameters=job.hyperparameters,
                generation=job.generation,
                fine_tuned_model=job.fine_tuned_model,
                base_model=job.base_model,
                train_file=job.train_file,
                validation_file=job.validation_file,
                train_examples=job.train_examples,
                validation_examples=job.validation_examples,
                max_seq_length=job.spec.max_seq_length,
            )
        )
        await self.publish(state_event(job_id, old, "queued", reason))
        return job

    async def fail(self, job_id: str, code: str, message: str, param: str) -> None:
        """End a job failed (unless it has ended already)."""
        try:
            old, _ = await self._run(
                self.store.transition, job_id, "failed", error_code=code, error_message=message, error_param=param
            )
        except FailedPrecondition:
            return
        await self.publish(state_event(job_id, old, "failed", message, error=JobError(code, message, param)))

    async def recover(self) -> None:
        """After a restart, finish preparing jobs that were mid-validation."""
        for job in await self._run(self.store.unfinished, "validating_files"):
            self._spawn(self._prepare(job.id))
        await self.evaluations.recover()

    # ---- reading ----------------------------------------------------------------------------------------------------
    async def get_job(self, job_id: str) -> Job:
        return await self._run(self.store.get, job_id)

    async def list_jobs(
        self, page_size: int, page_token: str, *, state: str = "", base_model: str = "", dataset: str = ""
    ) -> tuple[list[Job], str, int]:
        """Newest first, filtered by state, base model and dataset (id or name); (jobs, next page token, total)."""
        dataset_ids = None
        if dataset:
            dataset_ids = [(await self._dataset(self.dataset.get_dataset(dataset), "dataset")).id]
        return await self._run(self.store.list_jobs, page_size, page_token, state, base_model, dataset_ids)

    async def list_checkpoints(self, job_id: str) -> list[Checkpoint]:
        return await self._run(self.store.checkpoints, job_id)

    def backends(self) -> list[BackendInfo]:
        return catalog.backends()

    def base_models(self) -> list[BaseModelInfo]:
        return catalog.base_models()

    # ---- control ----------------------------------------------------------------------------------------------------
    async def cancel(self, job_id: str) -> Job:
        old, job = await self._run(self.store.transition, job_id, "cancelled", action="cancel")
        await self.queue.set_control(job_id, ControlFlag("cancel", job.generation))
        await self.publish(state_event(job_id, old, "cancelled", "cancelled by request"))
        return job

    async def pause(self, job_id: str) -> Job:
        old, job = await self._run(
            self.store.transition, job_id, "paused", allowed_from=["queued", "running"], action="pause"
        )
        await self.queue.set_control(job_id, ControlFlag("pause", job.generation))
        reason = "paused by request; resume continues from the latest checkpoint"
        await self.publish(state_event(job_id, old, "paused", reason))
        return job

    async def resume(self, job_id: str) -> Job:
        return await self.queue_job(job_id, "paused", "resumed by request")

    # ---- events -----------------------------------------------------------------------------------------------------
    def notify(self, job_id: str) -> None:
        """Wake the followers of a job (ingest calls it once it stored an event)."""
        for waiter in self._waiters.pop(job_id, []):
            waiter.set()

    async def stream_events(self, job_id: str, after: int, follow: bool) -> AsyncIterator[JobEvent]:
        """Stored events after `after`; with `follow`, then live ones until the job has ended (and the evaluation it
        asked for, when it succeeded)."""
        await self._run(self.store.get, job_id)
        last = after
        ended = False  # the event that ends the job was sent
        evaluated = False  # the event that ends its evaluation was sent
        settle_deadline: float | None = None
        while True:
            waiter = asyncio.Event()
            self._waiters[job_id].append(waiter)
            batch = await self._run(self.store.events_after, job_id, last)
            for ev in batch:
                last = ev.sequence
                ended = ended or (isinstance(ev.data, StateChange) and ev.data.to_state in states.TERMINAL)
                evaluated = evaluated or (isinstance(ev.data, JobEvaluation) and ev.data.state in states.TERMINAL)
                yield ev
            if batch:
                continue
            job = await self._run(self.store.get, job_id)
            if not follow:
                return
            settling = job.state in states.TERMINAL and not due(job)
            if settling:
                # The job row can turn terminal a moment before its terminal event is stored: wait for that event
                # (briefly), so a follower always sees how the job (and its evaluation) ended.
                loop_time = asyncio.get_running_loop().time()
                settle_deadline = settle_deadline or loop_time + 10
                wants_evaluation = job.evaluation is not None and job.evaluation.state in states.TERMINAL
                if (ended and (evaluated or not wants_evaluation)) or loop_time > settle_deadline:
                    return
            try:
                await asyncio.wait_for(waiter.wait(), timeout=0.5 if settling else 5)
            except TimeoutError:
                pass

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
