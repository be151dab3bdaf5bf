"""Trainer domain logic: validate and resolve job specs, prepare data, queue, control, follow events."""

from __future__ import annotations

import asyncio
import logging
import math
import random
import re
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import orjson
from google.protobuf import json_format
from nats.js import JetStreamContext

from tunery import hyperparams
from tunery.dataset.v1 import dataset_pb2, dataset_pb2_grpc
from tunery.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    TuneryError,
    Unavailable,
)
from tunery.models import BASE_MODELS, BaseModelSpec, resolve
from tunery.runtime.artifacts import LocalArtifactStore
from tunery.runtime.events import EventPublisher
from tunery.runtime.grpcerrors import from_rpc_error
from tunery.trainer.v1 import trainer_pb2 as pb
from tunery_trainer import convert, queue, states
from tunery_trainer.backends.registry import DEFAULT_BACKEND, get_backend, parse_config
from tunery_trainer.models import now
from tunery_trainer.settings import TrainerSettings
from tunery_trainer.store import JobRecord, JobStore, new_job_id

log = logging.getLogger("tunery.trainer")
SUFFIX_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
MAX_EPOCHS = 50
MAX_BATCH = 1024


def _num(v: float) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def job_event(job_id: str, message: str, level: str = "info", **data: Any) -> pb.JobEvent:
    ev = pb.JobEvent(job_id=job_id, level=level, message=message)
    ev.time.GetCurrentTime()
    for key, value in data.items():
        getattr(ev, key).CopyFrom(value)
    return ev


def state_event(job_id: str, old: str, new: str, reason: str, error: pb.JobError | None = None) -> pb.JobEvent:
    change = pb.StateChange(from_state=states.to_proto(old), to_state=states.to_proto(new), reason=reason)  # type: ignore[arg-type]
    if error is not None:
        change.error.CopyFrom(error)
    level = "error" if new == "failed" else "info"
    return job_event(job_id, f"{old or 'new'} -> {new}: {reason}", level, state_change=change)


def model_label(spec: BaseModelSpec) -> str:
    if spec.folder is not None:
        return spec.folder.name
    return spec.name.replace("/", "--")


class TrainerService:
    def __init__(
        self,
        settings: TrainerSettings,
        store: JobStore,
        events: EventPublisher,
        js: JetStreamContext,
        dataset: dataset_pb2_grpc.DatasetServiceStub,
    ) -> None:
        self.settings = settings
        self.store = store
        self.events = events
        self.js = js
        self.dataset = dataset
        self.artifacts = LocalArtifactStore(settings.artifact_root)
        self._tasks: set[asyncio.Task[None]] = set()
        self._waiters: dict[str, list[asyncio.Event]] = defaultdict(list)

    async def _run(self, fn: Any, *args: Any, **kw: Any) -> Any:
        return await asyncio.to_thread(fn, *args, **kw)

    async def publish(self, ev: pb.JobEvent, event_type: str = "job.event", event_id: str = "") -> None:
        await self.events.publish(
            event_type, ev.job_id, ev, event_id=event_id or f"job.{ev.job_id}.svc.{uuid.uuid4().hex}"
        )

    # ---- dataset service calls ------------------------------------------------------------------------------------
    async def _dataset_call(self, method: Any, request: Any, field: str) -> Any:
        try:
            return await method(request, timeout=30)
        except grpc.RpcError as rpc:
            err = from_rpc_error(rpc)
            if isinstance(err, NotFound | InvalidArgument | FailedPrecondition):
                err.field = field
                raise err from None
            raise Unavailable(
                f"the dataset service at {self.settings.dataset_addr} did not answer: {err.message}",
                code="dataset_service_unavailable",
            ) from None

    async def _check_version(self, ref: pb.DatasetRef, field: str) -> dataset_pb2.Version:
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
        resp = await self._dataset_call(
            self.dataset.GetVersion,
            dataset_pb2.GetVersionRequest(dataset=ref.dataset, version=ref.version),
            f"{field}.version",
        )
        return resp.version  # type: ignore[no-any-return]

    # ---- create ---------------------------------------------------------------------------------------------------
    async def create_job(self, spec: pb.JobSpec) -> tuple[JobRecord, bool]:
        if spec.idempotency_key:
            found = await self._run(self.store.find_by_key, spec.idempotency_key)
            if found is not None:
                return found, True
        try:
            model = resolve(spec.base_model, field="base_model")
        except TuneryError:
            raise
        method = {pb.METHOD_UNSPECIFIED: "sft", pb.METHOD_SFT: "sft", pb.METHOD_DPO: "dpo"}[spec.method]
        backend = get_backend(spec.backend)
        if method not in backend.methods:
            raise InvalidArgument(
                f"backend {backend.name!r} does not support method {method}; it supports {', '.join(backend.methods)}",
                code="unsupported_method",
                field="method",
            )
        parse_config(backend, json_format.MessageToDict(spec.backend_config))
        if spec.suffix and not SUFFIX_RE.match(spec.suffix):
            raise InvalidArgument(
                f"suffix {spec.suffix!r} must be 1-40 characters of a-z, 0-9 and '-'",
                code="invalid_suffix",
                field="suffix",
            )
        max_len = spec.max_seq_length or min(2048, model.context_length or 2048)
        if spec.max_seq_length < 0 or (model.context_length and max_len > model.context_length):
            raise InvalidArgument(
                f"max_seq_length {spec.max_seq_length} is beyond {model.name}'s context of {model.context_length}",
                code="invalid_max_seq_length",
                field="max_seq_length",
            )
        train_v = await self._check_version(spec.training_data, "training_data")
        want = "preference" if method == "dpo" else None
        if want and train_v.format != want:
            raise InvalidArgument(
                f"method dpo needs preference examples; version {train_v.number} holds {train_v.format} examples",
                code="format_mismatch",
                field="training_data",
            )
        if not want and train_v.format == "preference":
            raise InvalidArgument(
                "preference examples train with method dpo, not sft", code="format_mismatch", field="method"
            )
        n_train = train_v.example_count
        if spec.HasField("validation_data") and spec.validation_data.dataset:
            if spec.validation_split:
                raise InvalidArgument(
                    "give validation_data or validation_split, not both",
                    code="conflicting_fields",
                    field="validation_split",
                )
            await self._check_version(spec.validation_data, "validation_data")
        elif spec.validation_split:
            if not 0 < spec.validation_split < 1 or not _num(spec.validation_split):
                raise InvalidArgument(
                    f"validation_split must be between 0 and 1 (exclusive), not {spec.validation_split}",
                    code="invalid_validation_split",
                    field="validation_split",
                )
            n_train -= max(1, round(n_train * spec.validation_split))
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
        resolved = self._resolve_hyperparameters(spec, n_train)
        self._check_lora(spec.lora)

        job_id = new_job_id()
        label = model_label(model)
        name = f"ft:{label}:{spec.suffix}:{job_id}" if spec.suffix else f"ft:{label}::{job_id}"
        stored = pb.JobSpec()
        stored.CopyFrom(spec)
        stored.base_model = model.name
        stored.backend = spec.backend or DEFAULT_BACKEND
        stored.max_seq_length = max_len
        values = dict(
            id=job_id,
            state="validating_files",
            spec_json=convert.spec_to_json(stored),
            resolved_json=json_format.MessageToJson(resolved, indent=None),
            base_model=model.name,
            dataset_id=train_v.dataset_id,
            dataset_version=train_v.number,
            fine_tuned_model=name,
            idempotency_key=spec.idempotency_key or None,
            created_at=now(),
        )
        job, existing = await self._run(self.store.create, values)
        if existing:
            return job, True
        await self.publish(state_event(job.id, "", "validating_files", "job created"), event_id=f"job.{job.id}.created")
        self._spawn(self._prepare(job.id))
        return job, False

    def _resolve_hyperparameters(self, spec: pb.JobSpec, n: int) -> pb.Hyperparameters:
        h = spec.hyperparameters
        out = pb.Hyperparameters()
        if h.HasField("n_epochs") and not 1 <= h.n_epochs <= MAX_EPOCHS:
            raise InvalidArgument(
                f"n_epochs must be between 1 and {MAX_EPOCHS}, not {h.n_epochs}",
                code="invalid_n_epochs",
                field="hyperparameters.n_epochs",
            )
        out.n_epochs = h.n_epochs if h.HasField("n_epochs") else hyperparams.auto_epochs(n)
        if h.HasField("batch_size") and not 1 <= h.batch_size <= MAX_BATCH:
            raise InvalidArgument(
                f"batch_size must be between 1 and {MAX_BATCH}, not {h.batch_size}",
                code="invalid_batch_size",
                field="hyperparameters.batch_size",
            )
        out.batch_size = h.batch_size if h.HasField("batch_size") else hyperparams.auto_batch_size(n)
        if h.HasField("learning_rate") and h.HasField("learning_rate_multiplier"):
            raise InvalidArgument(
                "give learning_rate or learning_rate_multiplier, not both",
                code="conflicting_fields",
                field="hyperparameters.learning_rate_multiplier",
            )
        for name in ("learning_rate", "learning_rate_multiplier"):
            if h.HasField(name):
                v = getattr(h, name)
                if not _num(v) or v <= 0 or v > 1e3:
                    raise InvalidArgument(
                        f"{name} must be a positive finite number, not {v}",
                        code=f"invalid_{name}",
                        field=f"hyperparameters.{name}",
                    )
        if h.HasField("learning_rate"):
            if h.learning_rate >= 1:
                raise InvalidArgument(
                    f"learning_rate {h.learning_rate} is far too large for LoRA (typical: 1e-5 to 1e-3)",
                    code="invalid_learning_rate",
                    field="hyperparameters.learning_rate",
                )
            out.learning_rate = h.learning_rate
        else:
            mult = h.learning_rate_multiplier if h.HasField("learning_rate_multiplier") else 1.0
            out.learning_rate = hyperparams.auto_learning_rate(mult)
            if h.HasField("learning_rate_multiplier"):
                out.learning_rate_multiplier = mult
        if h.HasField("gradient_accumulation_steps") and not 1 <= h.gradient_accumulation_steps <= 1024:
            raise InvalidArgument(
                f"gradient_accumulation_steps must be between 1 and 1024, not {h.gradient_accumulation_steps}",
                code="invalid_gradient_accumulation_steps",
                field="hyperparameters.gradient_accumulation_steps",
            )
        out.gradient_accumulation_steps = h.gradient_accumulation_steps or 1
        for name, hi in (("warmup_ratio", 1.0), ("weight_decay", 1.0)):
            v = getattr(h, name)
            if h.HasField(name) and (not _num(v) or not 0 <= v <= hi):
                raise InvalidArgument(
                    f"{name} must be between 0 and {hi}, not {v}",
                    code=f"invalid_{name}",
                    field=f"hyperparameters.{name}",
                )
            setattr(out, name, v)
        return out

    def _check_lora(self, lora: pb.LoraConfig) -> None:
        if lora.HasField("rank") and not 1 <= lora.rank <= 1024:
            raise InvalidArgument(
                f"lora.rank must be between 1 and 1024, not {lora.rank}", code="invalid_lora_rank", field="lora.rank"
            )
        if lora.HasField("alpha") and lora.alpha <= 0:
            raise InvalidArgument(
                f"lora.alpha must be positive, not {lora.alpha}", code="invalid_lora_alpha", field="lora.alpha"
            )
        if lora.HasField("dropout") and not (_num(lora.dropout) and 0 <= lora.dropout < 1):
            raise InvalidArgument(
                f"lora.dropout must be in [0, 1), not {lora.dropout}", code="invalid_lora_dropout", field="lora.dropout"
            )
        for i, m in enumerate(lora.target_modules):
            if not re.match(r"^[A-Za-z0-9_.-]{1,100}$", m):
                raise InvalidArgument(
                    f"lora.target_modules[{i}] {m!r} is not a module name",
                    code="invalid_target_module",
                    field=f"lora.target_modules[{i}]",
                )

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- validating_files -> queued ----------------------------------------------------------------------------
    async def _export(self, ref: pb.DatasetRef, key: str) -> int:
        lines = 0
        try:
            with self.artifacts.writer(key) as fh:
                call = self.dataset.ExportVersion(
                    dataset_pb2.ExportVersionRequest(dataset=ref.dataset, version=ref.version), timeout=600
                )
                async for chunk in call:
                    fh.write(chunk.chunk)
                    lines += chunk.chunk.count(b"\n")
        except grpc.RpcError as rpc:
            raise from_rpc_error(rpc) from None
        return lines

    async def _prepare(self, job_id: str) -> None:
        """Snapshot the data into shared artifacts (workers need only NATS and storage), then queue the job."""
        job = await self._run(self.store.get, job_id)
        spec = convert.spec_from_json(job.spec_json)
        base = f"jobs/{job_id}/data"
        try:
            await self._dataset_call(
                self.dataset.SetVersionReference,
                dataset_pb2.SetVersionReferenceRequest(
                    dataset=spec.training_data.dataset,
                    version=spec.training_data.version,
                    reference=f"job:{job_id}",
                    add=True,
                ),
                "training_data",
            )
            n_train = await self._export(spec.training_data, f"{base}/train.jsonl")
            n_val = 0
            val_key = ""
            if spec.validation_data.dataset:
                val_key = f"{base}/validation.jsonl"
                n_val = await self._export(spec.validation_data, val_key)
            elif spec.validation_split:
                val_key = f"{base}/validation.jsonl"
                n_train, n_val = await self._run(self._split_file, base, spec.validation_split, spec.seed)
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

    def _split_file(self, base: str, fraction: float, seed: int) -> tuple[int, int]:
        path = self.artifacts.path(f"{base}/train.jsonl")
        lines = path.read_bytes().splitlines()
        order = list(range(len(lines)))
        random.Random(seed).shuffle(order)
        n_val = max(1, round(len(lines) * fraction))
        val_idx = set(order[:n_val])
        self.artifacts.put_bytes(f"{base}/validation.jsonl", b"".join(lines[i] + b"\n" for i in sorted(val_idx)))
        self.artifacts.put_bytes(
            f"{base}/train.jsonl", b"".join(lines[i] + b"\n" for i in range(len(lines)) if i not in val_idx)
        )
        return len(lines) - n_val, n_val

    async def queue_job(self, job_id: str, expected: str, reason: str) -> JobRecord:
        old, job = await self._run(
            self.store.transition,
            job_id,
            "queued",
            allowed_from=[expected],
            action="queue",
            generation=(await self._run(self.store.get, job_id)).generation + 1,
        )
        await queue.set_control(self.js, job_id, queue.ControlFlag("run", job.generation))
        spec = convert.spec_from_json(job.spec_json)
        task = pb.TrainTask(
            job=convert.job(job),
            generation=job.generation,
            base_model=job.base_model,
            train_file=job.train_file,
            validation_file=job.validation_file,
            train_examples=job.train_examples,
            validation_examples=job.validation_examples,
            max_seq_length=spec.max_seq_length,
        )
        await queue.enqueue(self.js, task)
        await self.publish(state_event(job_id, old, "queued", reason))
        return job  # type: ignore[no-any-return]

    async def fail(self, job_id: str, code: str, message: str, param: str) -> None:
        try:
            old, _ = await self._run(
                self.store.transition, job_id, "failed", error_code=code, error_message=message, error_param=param
            )
        except FailedPrecondition:
            return
        await self.publish(
            state_event(job_id, old, "failed", message, pb.JobError(code=code, message=message, param=param))
        )

    async def recover(self) -> None:
        """After a restart, finish preparing jobs that were mid-validation."""
        for job in await self._run(self.store.unfinished, "validating_files"):
            self._spawn(self._prepare(job.id))

    # ---- control ------------------------------------------------------------------------------------------------
    async def cancel(self, job_id: str) -> JobRecord:
        old, job = await self._run(self.store.transition, job_id, "cancelled", action="cancel")
        await queue.set_control(self.js, job_id, queue.ControlFlag("cancel", job.generation))
        await self.publish(state_event(job_id, old, "cancelled", "cancelled by request"))
        return job  # type: ignore[no-any-return]

    async def pause(self, job_id: str) -> JobRecord:
        old, job = await self._run(
            self.store.transition, job_id, "paused", allowed_from=["queued", "running"], action="pause"
        )
        await queue.set_control(self.js, job_id, queue.ControlFlag("pause", job.generation))
        await self.publish(
            state_event(job_id, old, "paused", "paused by request; resume continues from the latest checkpoint")
        )
        return job  # type: ignore[no-any-return]

    async def resume(self, job_id: str) -> JobRecord:
        return await self.queue_job(job_id, "paused", "resumed by request")

    # ---- events -------------------------------------------------------------------------------------------------
    def notify(self, job_id: str) -> None:
        for waiter in self._waiters.pop(job_id, []):
            waiter.set()

    async def stream_events(self, job_id: str, after: int, follow: bool) -> AsyncIterator[pb.JobEvent]:
        await self._run(self.store.get, job_id)
        last = after
        ended = False  # the event that ends the job was sent
        settle_deadline: float | None = None
        terminal = {states.to_proto(s) for s in states.TERMINAL}
        while True:
            waiter = asyncio.Event()
            self._waiters[job_id].append(waiter)
            batch = await self._run(self.store.events_after, job_id, last)
            for ev in batch:
                last = ev.sequence
                ended = ended or (ev.WhichOneof("data") == "state_change" and ev.state_change.to_state in terminal)
                yield ev
            if batch:
                continue
            job = await self._run(self.store.get, job_id)
            if not follow:
                return
            if job.state in states.TERMINAL:
                # The job row can turn terminal a moment before its terminal event is stored: wait for that event
                # (briefly), so a follower always sees how the job ended.
                loop_time = asyncio.get_running_loop().time()
                settle_deadline = settle_deadline or loop_time + 10
                if ended or loop_time > settle_deadline:
                    return
            try:
                await asyncio.wait_for(waiter.wait(), timeout=0.5 if job.state in states.TERMINAL else 5)
            except TimeoutError:
                pass

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open("rb") as fh:
        return [orjson.loads(line) for line in fh if line.strip()]


def base_models() -> list[pb.BaseModel]:
    out = []
    for name in BASE_MODELS.names():
        spec = resolve(name)
        src = "gguf" if spec.gguf else "folder" if spec.folder else "hub"
        out.append(
            pb.BaseModel(
                name=spec.name,
                description=spec.description,
                context_length=spec.context_length,
                source=src,
                default=(name == "smollm2-135m-instruct"),
            )
        )
    return out
