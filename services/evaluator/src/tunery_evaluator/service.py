"""Evaluator domain logic: validate specs and read their examples, queue, cancel, delete, stream results, compare.

Works on domain objects only (domain.py); server.py converts protobuf at the edge. The dataset and trainer
services are reached through upstream.py, models through the OpenAI-compatible client, the queue through queue.py,
events through an `EvaluationEvents`. An evaluation keeps its examples in the store from the moment it is created,
and its dataset version is marked referenced (so it cannot be deleted under it) until the evaluation is deleted.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any, Protocol, TypeVar

from tunery.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable, required
from tunery.split import split_examples
from tunery_evaluator.client import EndpointDown, EndpointRefused, OpenAIModelClient
from tunery_evaluator.domain import (
    TERMINAL,
    DatasetClient,
    DatasetVersionRef,
    Evaluation,
    EvaluationSpec,
    ExampleResult,
    GenerationConfig,
    GraderInfo,
    GraderSpec,
    ModelRef,
    TrainerClient,
    item_of,
    now,
)
from tunery_evaluator.graders import registry
from tunery_evaluator.graders.base import GraderContext, Item
from tunery_evaluator.runner import EndpointGone, EvaluationEvents, ModelAccess, Runner, Waiter, answer, grade_all
from tunery_evaluator.settings import EvaluatorSettings
from tunery_evaluator.store import EvaluationStore, new_evaluation_id

log = logging.getLogger("tunery.evaluator")
T = TypeVar("T")


class WorkQueue(Protocol):
    async def enqueue(self, evaluation_id: str) -> None: ...


def reference_of(evaluation_id: str) -> str:
    return f"evaluation:{evaluation_id}"


class EvaluatorService:
    def __init__(self, settings: EvaluatorSettings, store: EvaluationStore, events: EvaluationEvents,
                 queue: WorkQueue, client: OpenAIModelClient, datasets: DatasetClient,
                 trainer: TrainerClient | None = None) -> None:
        self.settings = settings
        self.store = store
        self.events = events
        self.queue = queue
        self.client = client
        self.datasets = datasets
        self.trainer = trainer
        self.runner = Runner(settings, store, client, events, notify=self.notify)
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)

    async def _db(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        return await asyncio.to_thread(fn, *args, **kw)

    # ---- validation -----------------------------------------------------------------------------------------
    async def _check_models(self, models: tuple[ModelRef, ...], field: str = "models") -> None:
        if not models:
            raise InvalidArgument(f"field '{field}' needs at least one model", code="missing_field", field=field)
        seen: set[str] = set()
        served: list[str] | None = None
        for i, m in enumerate(models):
            required(m.model, f"{field}[{i}].model")
            if m.name in seen:
                raise InvalidArgument(f"{field}[{i}]: the model name {m.name!r} is used twice; give a distinct label",
                                      code="duplicate_model", field=f"{field}[{i}].label")
            seen.add(m.name)
            if m.base_url:
                if not m.base_url.startswith(("http://", "https://")):
                    raise InvalidArgument(f"{field}[{i}].base_url must start with http:// or https://, not "
                                          f"{m.base_url!r}", code="invalid_base_url", field=f"{field}[{i}].base_url")
                continue
            if served is None:
                try:
                    served = await self.client.list_models()
                except EndpointDown as err:
                    raise Unavailable(f"the gateway at {err.base_url} cannot be reached to check the models: "
                                      f"{err.reason}", code="gateway_unavailable",
                                      field=f"{field}[{i}].model") from None
                except EndpointRefused as err:
                    if err.status in (401, 403):
                        raise FailedPrecondition(
                            f"the gateway at {err.base_url} rejected the evaluator's API key (HTTP {err.status}: "
                            f"{err.message}); set TUNERY_EVALUATOR_GATEWAY_API_KEY to a gateway key with the "
                            "inference scope", code="gateway_rejected_key", field=f"{field}[{i}].model") from None
                    raise Unavailable(f"the gateway at {err.base_url} could not list its models to check "
                                      f"{field}[{i}].model: HTTP {err.status}: {err.message}",
                                      code="gateway_error", field=f"{field}[{i}].model") from None
            if m.model not in served:
                raise InvalidArgument(
                    f"{field}[{i}].model: the gateway does not serve {m.model!r}; it serves "
                    f"{', '.join(sorted(served)) or 'no models'}", code="unknown_model", field=f"{field}[{i}].model")

    @staticmethod
    def _check_generation(g: GenerationConfig, field: str = "generation") -> None:
        def bad(name: str, why: str) -> InvalidArgument:
            return InvalidArgument(f"{field}.{name} {why}", code="invalid_generation", field=f"{field}.{name}")

        if g.temperature is not None and not 0.0 <= g.temperature <= 2.0:
            raise bad("temperature", f"must be between 0 and 2, not {g.temperature}")
        if g.top_p is not None and not 0.0 < g.top_p <= 1.0:
            raise bad("top_p", f"must be in (0, 1], not {g.top_p}")
        if g.max_tokens < 0:
            raise bad("max_tokens", f"must be positive (0 means 256), not {g.max_tokens}")
        if not 0 <= g.concurrency <= 256:
            raise bad("concurrency", f"must be between 1 and 256 (0 means the default), not {g.concurrency}")
        if len(g.stop) > 4:
            raise bad("stop", f"takes at most 4 sequences, not {len(g.stop)}")

    def _check_graders(self, specs: tuple[GraderSpec, ...]) -> list[GraderSpec]:
        """Names filled in, and each grader built once as a run builds it (judges and reference_loss need model
        access at construction; nothing is called here)."""
        named = registry.named(specs)
        access = ModelAccess(self.client, Waiter(0.0))
        registry.build_all(named, GraderContext(access, access))
        return named

    async def _version(self, ref: DatasetVersionRef, field: str) -> tuple[str, str, int, list[dict[str, Any]]]:
        required(ref.dataset, f"{field}.dataset")
        if ref.version <= 0:
            raise InvalidArgument(f"{field}.version must name a frozen version (1 or more), not {ref.version}",
                                  code="version_not_frozen", field=f"{field}.version")
        info = await self.datasets.get_version(ref.dataset, ref.version)
        if info.example_count == 0:
            raise InvalidArgument(f"version {ref.version} of dataset {info.dataset_name!r} has no examples",
                                  code="empty_dataset_version", field=field)
        examples = await self.datasets.export(info.dataset_id, ref.version)
        return info.dataset_id, info.dataset_name, ref.version, examples

    async def _data(self, spec: EvaluationSpec) -> tuple[str, str, int, list[Item]]:
        """(dataset id, name, version, items) of the spec's data, limit applied."""
        d = spec.data
        if d.limit < 0:
            raise InvalidArgument(f"data.limit must be 0 (all) or more, not {d.limit}", code="invalid_limit",
                                  field="data.limit")
        if d.dataset_version is not None:
            ds, name, ver, examples = await self._version(d.dataset_version, "data.dataset_version")
        elif d.job_id:
            ds, name, ver, examples = await self._job_examples(d.job_id)
        else:
            raise InvalidArgument("field 'data' needs a dataset_version or a job_id", code="missing_field",
                                  field="data")
        if d.limit:
            examples = examples[: d.limit]
        if len(examples) > self.settings.max_examples:
            raise InvalidArgument(f"the data has {len(examples)} examples; this evaluator takes at most "
                                  f"{self.settings.max_examples} (set data.limit)", code="too_many_examples",
                                  field="data.limit")
        items = [item_of(i, ex, f"{ds}:{ver}:{i}") for i, ex in enumerate(examples)]
        for it in items:
            if not it.messages:
                raise InvalidArgument(f"example {it.index} of dataset {name!r} version {ver} has nothing to ask the "
                                      f"models (no message before its last assistant turn)",
                                      code="example_without_input", field="data")
        return ds, name, ver, items

    async def _job_examples(self, job_id: str) -> tuple[str, str, int, list[dict[str, Any]]]:
        """A job's held-out examples: its validation version, or its validation split redone as the trainer did it
        (tunery.split over the training version's examples with the job's fraction and seed)."""
        if self.trainer is None:
            raise FailedPrecondition("this evaluator has no trainer address; give data.dataset_version",
                                     code="no_trainer", field="data.job_id")
        try:
            job = await self.trainer.job_data(job_id)
        except NotFound as err:
            raise NotFound(err.message, code=err.code, field="data.job_id") from None
        if job.validation is not None:
            return await self._version(job.validation, "data.job_id")
        if not job.validation_split:
            raise FailedPrecondition(f"job {job_id!r} has no validation data (no validation_data, no "
                                     f"validation_split); give data.dataset_version", code="job_without_validation",
                                     field="data.job_id")
        ds, name, ver, examples = await self._version(job.training, "data.job_id")
        _, val_idx = split_examples(examples, job.validation_split, job.seed)
        return ds, name, ver, [examples[i] for i in val_idx]

    # ---- evaluations ----------------------------------------------------------------------------------------
    async def create(self, spec: EvaluationSpec) -> tuple[Evaluation, bool]:
        if (earlier := await self._db(self.store.by_idempotency_key, spec.idempotency_key)) is not None:
            return earlier, True
        await self._check_models(spec.models)
        self._check_generation(spec.generation)
        spec = replace(spec, graders=tuple(self._check_graders(spec.graders)))
        ds, name, ver, items = await self._data(spec)
        ev = Evaluation(id=new_evaluation_id(), spec=spec, state="queued", create_time=now(),
                        resolved_data=DatasetVersionRef(ds, ver), job_id=spec.data.job_id)
        await self.datasets.set_reference(ds, ver, reference_of(ev.id))
        try:
            stored, existing = await self._db(self.store.create, ev, items, name)
        except BaseException:
            await self.datasets.set_reference(ds, ver, reference_of(ev.id), add=False)
            raise
        if existing:
            await self.datasets.set_reference(ds, ver, reference_of(ev.id), add=False)
            return stored, True
        try:
            await self.queue.enqueue(stored.id)
        except Exception as err:  # NATS away: nothing half-made stays behind, a retry starts afresh
            await self._db(self.store.finish, stored.id, "failed")
            await self._db(self.store.delete, stored.id)
            await self.datasets.set_reference(ds, ver, reference_of(ev.id), add=False)
            raise Unavailable(f"the evaluation could not be queued ({type(err).__name__}: {err}); nothing was kept, "
                              f"try again", code="queue_unavailable") from None
        await self.runner.publish("evaluation.created", stored)
        return stored, False

    async def get(self, evaluation_id: str) -> Evaluation:
        return await self._db(self.store.get, evaluation_id)

    async def list_evaluations(self, page_size: int, page_token: str,
                               **filters: Any) -> tuple[list[Evaluation], str, int]:
        return await self._db(self.store.list_evaluations, page_size, page_token, **filters)

    async def cancel(self, evaluation_id: str) -> Evaluation:
        ev = await self.get(evaluation_id)
        if ev.state not in TERMINAL:
            summary = await self.runner.summarize(ev)
            ended, changed = await self._db(self.store.finish, evaluation_id, "cancelled", summary=summary)
            if changed:
                await self.runner.publish("evaluation.cancelled", ended)
                return ended
            ev = ended
        raise FailedPrecondition(f"evaluation {evaluation_id!r} has ended ({ev.state}); there is nothing to cancel",
                                 code="evaluation_finished", field="evaluation_id")

    async def delete(self, evaluation_id: str) -> None:
        ev = await self.get(evaluation_id)
        if ev.state not in TERMINAL:
            raise FailedPrecondition(f"evaluation {evaluation_id!r} is {ev.state}; cancel it before deleting it",
                                     code="evaluation_active", field="evaluation_id")
        if ev.resolved_data is not None:
            await self.datasets.set_reference(ev.resolved_data.dataset, ev.resolved_data.version,
                                              reference_of(ev.id), add=False)
        await self._db(self.store.delete, evaluation_id)

    async def run(self, evaluation_id: str) -> Evaluation:
        return await self.runner.run(evaluation_id)

    # ---- following results ----------------------------------------------------------------------------------
    def notify(self, evaluation_id: str) -> None:
        for e in self._waiters.get(evaluation_id, ()):
            e.set()

    async def stream_results(self, evaluation_id: str, after_sequence: int = 0,
                             follow: bool = True) -> AsyncIterator[ExampleResult | Evaluation]:
        """Stored results after ``after_sequence``, then (following) new ones as they are stored; the evaluation is
        sent whenever its state changes and last, when it ends. Another process's run is seen by polling."""
        await self.get(evaluation_id)
        wake = asyncio.Event()
        self._waiters[evaluation_id].add(wake)
        sent_state = ""
        try:
            while True:
                wake.clear()
                batch = await self._db(self.store.results, evaluation_id, after_sequence)
                for r in batch:
                    yield r
                    after_sequence = r.sequence
                if batch:
                    continue
                ev = await self.get(evaluation_id)
                if ev.state != sent_state:
                    yield ev
                    sent_state = ev.state
                if ev.state in TERMINAL or not follow:
                    return
                try:
                    await asyncio.wait_for(wake.wait(), 1.0)
                except TimeoutError:
                    pass
        finally:
            self._waiters[evaluation_id].discard(wake)
            if not self._waiters[evaluation_id]:
                self._waiters.pop(evaluation_id, None)

    # ---- side by side ---------------------------------------------------------------------------------------
    async def compare(self, conversations: list[list[dict[str, Any]]], models: tuple[ModelRef, ...],
                      generation: GenerationConfig, graders: tuple[GraderSpec, ...],
                      references: list[str]) -> list[ExampleResult]:
        if not conversations:
            raise InvalidArgument("field 'conversations' needs at least one conversation", code="missing_field",
                                  field="conversations")
        for i, conv in enumerate(conversations):
            if not conv:
                raise InvalidArgument(f"conversations[{i}] has no messages", code="missing_field",
                                      field=f"conversations[{i}].messages")
        if references and len(references) != len(conversations):
            raise InvalidArgument(f"references has {len(references)} entries for {len(conversations)} "
                                  f"conversations; give one per conversation or none", code="invalid_references",
                                  field="references")
        await self._check_models(models)
        self._check_generation(generation)
        named = self._check_graders(graders)
        waiter = Waiter(0.0)
        access = ModelAccess(self.client, waiter)
        built = registry.build_all(named, GraderContext(access, access, 0))
        sem = asyncio.Semaphore(generation.resolved_concurrency(self.settings.default_concurrency))

        async def one(i: int, conv: list[dict[str, Any]]) -> ExampleResult:
            item = Item(i, conv, references[i] if references else "")
            async with sem:
                answers = list(await asyncio.gather(*(answer(self.client, waiter, m, item, generation)
                                                      for m in models)))
            grades = await grade_all(item, answers, built)
            return ExampleResult("", i, "", item.messages, item.reference, answers, grades)

        try:
            return list(await asyncio.gather(*(one(i, c) for i, c in enumerate(conversations))))
        except EndpointGone as err:
            raise Unavailable(f"the model endpoint cannot be reached: {err}", code="endpoint_unavailable",
                              field="models") from None

    def graders(self) -> list[GraderInfo]:
        return registry.info()
