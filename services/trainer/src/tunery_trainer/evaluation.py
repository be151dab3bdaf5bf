"""The evaluation a job asks for (spec.evaluation): checked when the job is created, created on the evaluator when
the job has succeeded (base against the fine-tuned model on the job's validation part), followed to its end and kept
with the job. Domain code: the evaluator is an `EvaluatorClient`, events go to the service's `EventSink`.

Whatever the evaluation does, the job stays succeeded; what went wrong is the evaluation's error. The job row's
evaluation record is written before anything is asked of the evaluator, and creation is idempotent (the key is the
job's), so a trainer that restarts half-way picks every unfinished evaluation up again (`recover`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import jsonschema

from tunery.errors import FailedPrecondition, InvalidArgument, NotFound, TuneryError, Unavailable
from tunery.models import model_label, resolve
from tunery_trainer.domain import (
    EvaluationData,
    EvaluationRequest,
    EvaluatorClient,
    Job,
    JobError,
    JobEvaluation,
    JobEvent,
    JobSpec,
    ModelRef,
    job_event,
)
from tunery_trainer.settings import TrainerSettings
from tunery_trainer.store import JobStore

log = logging.getLogger("tunery.trainer.evaluation")
ENDED = frozenset({"succeeded", "failed", "cancelled"})
# What the evaluator answers for a model the gateway does not serve (yet): the gateway registers a fine-tuned model
# from the same succeeded event the trainer reacts to, so the first tries may come before it.
UNKNOWN_MODEL = frozenset({"unknown_model", "model_not_found"})
BASE_LABEL, TUNED_LABEL = "base", "fine-tuned"


def due(job: Job) -> bool:
    """The job asked for an evaluation that has not ended yet (or not started: the job has yet to succeed)."""
    if job.spec.evaluation is None or job.state in ("failed", "cancelled"):
        return False
    return job.evaluation is None or job.evaluation.state not in ENDED


def _bad(message: str, code: str, field: str) -> InvalidArgument:
    return InvalidArgument(message, code=code, field=field)


def _check_config(config: dict[str, Any], schema: dict[str, Any], field: str, kind: str) -> None:
    """The grader's config against its JSON Schema (ListGraders), before hours of training rather than after; what
    only the grader itself can judge is checked when the evaluation is created."""
    if not schema:
        return
    try:
        jsonschema.validate(config, schema)
    except jsonschema.ValidationError as err:
        where = field + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path)
        raise _bad(f"{where}: {err.message} (grader {kind!r})", "invalid_grader_config", where) from None
    except jsonschema.SchemaError:  # the plugin's own schema is broken: the evaluator will say so, not our caller
        log.warning("grader %s has an invalid config schema; its config is checked by the evaluator", kind)


def summary_text(summary: dict[str, Any] | None) -> str:
    """`grader: model mean, model mean; ...` for the event's message (the full summary is in its data)."""
    if not summary:
        return ""
    by_grader: dict[str, list[str]] = {}
    for g in summary.get("graders", []):
        by_grader.setdefault(str(g.get("grader", "")), []).append(f"{g.get('model', '')} {g.get('mean', 0.0):.3g}")
    return "; ".join(f"{name}: {', '.join(parts)}" for name, parts in by_grader.items())


class JobEvaluations:
    def __init__(
        self,
        settings: TrainerSettings,
        store: JobStore,
        client: EvaluatorClient,
        publish: Callable[[JobEvent, str], Awaitable[None]],
        spawn: Callable[[Any], None],
    ) -> None:
        self.settings = settings
        self.store = store
        self.client = client
        self.publish = publish
        self.spawn = spawn
        self._running: set[str] = set()

    # ---- CreateJob ----------------------------------------------------------------------------------------------
    async def check(self, spec: JobSpec) -> str:
        """Every mistake in spec.evaluation as an InvalidArgument naming its field; returns a warning ("" if none)
        when the graders could not be checked because the evaluator did not answer."""
        ev = spec.evaluation
        if ev is None:
            return ""
        if not ev.graders:
            raise _bad("evaluation needs at least one grader", "missing_field", "evaluation.graders")
        names: set[str] = set()
        for i, g in enumerate(ev.graders):
            if not g.type:
                raise _bad(f"evaluation.graders[{i}] names no type", "missing_field", f"evaluation.graders[{i}].type")
            if g.name and g.name in names:
                raise _bad(f"grader name {g.name!r} is used twice", "duplicate_grader", f"evaluation.graders[{i}].name")
            names.add(g.name)
        data = ev.data
        if data is not None and data.dataset and data.version <= 0:
            raise _bad("evaluation.data needs a frozen version (>= 1) of its dataset", "draft_not_allowed",
                       "evaluation.data.version")  # fmt: skip
        own_data = data is None or not (data.dataset or data.job_id)
        if own_data and spec.validation_data is None and not spec.validation_split:
            raise _bad(
                "evaluation runs on the job's validation part, and this job has none: give validation_data or "
                "validation_split, or evaluation data of its own",
                "no_evaluation_data",
                "evaluation.data",
            )
        if data is not None and data.limit < 0:
            raise _bad(f"evaluation.data.limit must be >= 0, not {data.limit}", "invalid_limit",
                       "evaluation.data.limit")  # fmt: skip
        for i, m in enumerate(ev.extra_models):
            if not m.model:
                raise _bad(f"evaluation.extra_models[{i}] names no model", "missing_field",
                           f"evaluation.extra_models[{i}].model")  # fmt: skip
        try:
            installed = {g.type: g for g in await self.client.list_graders()}
        except Unavailable as err:
            return f"the graders were not checked ({err.message}); the evaluator checks them when the job has succeeded"
        for i, g in enumerate(ev.graders):
            if g.type not in installed:
                raise _bad(
                    f"unknown grader {g.type!r} in evaluation.graders[{i}]; installed: {', '.join(sorted(installed))}",
                    "unknown_grader",
                    f"evaluation.graders[{i}].type",
                )
            _check_config(g.config, installed[g.type].config_schema, f"evaluation.graders[{i}].config", g.type)
        return ""

    # ---- after the job succeeded --------------------------------------------------------------------------------
    def start(self, job_id: str) -> None:
        if job_id not in self._running:
            self._running.add(job_id)
            self.spawn(self._run(job_id))

    async def recover(self) -> None:
        for job_id in await asyncio.to_thread(self.store.unfinished_evaluations):
            self.start(job_id)

    def request(self, job: Job) -> EvaluationRequest:
        ev = job.spec.evaluation
        assert ev is not None
        data = ev.data or EvaluationData()
        if not (data.dataset or data.job_id):
            data = dataclasses.replace(data, job_id=job.id)
        models: list[ModelRef] = []
        if not ev.skip_base:
            models.append(ModelRef(model=model_label(resolve(job.base_model)), label=BASE_LABEL))
        models.append(ModelRef(model=job.fine_tuned_model, label=TUNED_LABEL))
        models += ev.extra_models
        return EvaluationRequest(
            job_id=job.id,
            models=tuple(models),
            data=data,
            graders=ev.graders,
            generation=ev.generation,
            display_name=f"{job.fine_tuned_model} after job {job.id}",
            idempotency_key=f"trainer-job-evaluation:{job.id}",
            metadata={"job_id": job.id},
        )

    async def _save(self, job_id: str, ev: JobEvaluation) -> None:
        await asyncio.to_thread(self.store.set_evaluation, job_id, ev)

    async def _announce(self, job_id: str, ev: JobEvaluation, what: str) -> None:
        level = "warning" if ev.state in ("failed", "cancelled") else "info"
        text = f"evaluation {ev.evaluation_id or '(not created)'} {what}"
        if ev.error is not None:
            text += f": {ev.error.code}: {ev.error.message}"
        elif (summary := summary_text(ev.summary)):
            text += f": {summary}"
        await self.publish(job_event(job_id, text, level, data=ev), f"job.{job_id}.evaluation.{what}")

    async def _fail(self, job_id: str, evaluation_id: str, err: TuneryError) -> None:
        ev = JobEvaluation(evaluation_id, "failed", None, JobError(err.code, err.message, err.field or ""))
        await self._save(job_id, ev)
        await self._announce(job_id, ev, "failed")

    async def _run(self, job_id: str) -> None:
        try:
            job = await asyncio.to_thread(self.store.get, job_id)
            current = job.evaluation or JobEvaluation()
            if current.state in ENDED or job.spec.evaluation is None:  # a redelivered succeeded event
                return
            if not current.evaluation_id:
                created = await self._create(job)
                if created is None:
                    return
                current = created
                await self._save(job_id, current)
                await self._announce(job_id, current, "created")
            await self._follow(job_id, current)
        except Exception as err:  # never let a bug take the job down with it: record it with the evaluation
            log.exception("evaluation of job %s", job_id)
            await self._fail(job_id, "", TuneryError(f"{type(err).__name__}: {err}", code="evaluation_error"))
        finally:
            self._running.discard(job_id)

    async def _create(self, job: Job) -> JobEvaluation | None:
        """Create the evaluation, retrying (with a bound) an evaluator that does not answer and a gateway that does
        not serve the new model yet; None when it could not be created (the error is recorded)."""
        request = self.request(job)
        start = time.monotonic()
        delay = 0.25
        while True:
            try:
                return await self.client.create(request)
            except Unavailable as err:
                if time.monotonic() - start > self.settings.evaluator_retry_seconds:
                    await self._fail(job.id, "", err)
                    return None
                log.warning("evaluator not reachable for job %s (%s); retrying", job.id, err.message)
            except (InvalidArgument, NotFound, FailedPrecondition) as err:
                waited = time.monotonic() - start
                if err.code not in UNKNOWN_MODEL or waited > self.settings.evaluation_model_wait_seconds:
                    await self._fail(job.id, "", err)
                    return None
                log.info("the gateway does not serve %s yet; retrying", job.fine_tuned_model)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _follow(self, job_id: str, ev: JobEvaluation) -> None:
        """Until the evaluation ends: its NATS events wake the follower, GetEvaluation says where it is."""
        evaluation_id = ev.evaluation_id
        try:
            while ev.state not in ENDED:
                await self.client.changed(evaluation_id, self.settings.evaluation_poll_seconds)
                try:
                    now = await self.client.get(evaluation_id)
                except Unavailable as err:  # the evaluator restarts: the evaluation resumes there, keep following
                    log.warning("evaluation %s of job %s: %s", evaluation_id, job_id, err.message)
                    continue
                except NotFound as err:
                    await self._fail(job_id, evaluation_id, err)
                    return
                if now.state != ev.state or now.summary != ev.summary:
                    await self._save(job_id, now)
                ev = now
        finally:
            self.client.forget(evaluation_id)
        await self._announce(job_id, ev, ev.state)
