"""The evaluator end to end, all real: nats-server, the dataset service on gRPC, the gateway (uvicorn) serving the
tiny random Llama and a LoRA adapter of it, and `python -m tunery_evaluator` as a process, with the third-party
grader `word_overlap` installed as its own package. One stack for the module; every wait is on something observed
(a state, a stored result, a NATS event, a request reaching an endpoint), never a fixed sleep."""

from __future__ import annotations

import contextlib
import json
import math
import os
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import sacrebleu
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from google.protobuf import struct_pb2

from tunery.common.v1 import common_pb2
from tunery.dataset.v1 import dataset_pb2 as dpb
from tunery.dataset.v1 import dataset_pb2_grpc
from tunery.errors import TuneryError
from tunery.evaluator.v1 import evaluator_pb2 as pb
from tunery.runtime import client, events
from tunery.runtime.grpcerrors import from_rpc_error
from tunery.runtime.natsd import free_port
from tunery.split import split_examples, validation_count
from tunery.testing import EventLog, LoopThread, build_tiny_llama, nats_server
from tunery.trainer.v1 import trainer_pb2 as tpb
from tunery.trainer.v1 import trainer_pb2_grpc
from tunery_evaluator.testing import EvaluatorProcess, get, results, wait_state, wait_until
from tunery_gateway.testing import ServerThread, make_adapter

ADMIN_KEY = "tny-000000000000-admin-key-for-the-evaluator-tests"
INTERNAL_KEY = "tny-000000000000-internal-key-the-evaluator-calls-with"  # inference scope, as `tunery up` makes
SUCCEEDED, FAILED = common_pb2.JOB_STATE_SUCCEEDED, common_pb2.JOB_STATE_FAILED


def chat(i: int) -> dict[str, Any]:
    return {"messages": [{"role": "system", "content": "Answer with the number doubled."},
                         {"role": "user", "content": f"What is {i} doubled?"},
                         {"role": "assistant", "content": f"{i} doubled is {2 * i}."}]}


@dataclass
class Stack:
    tmp: Path
    loop: LoopThread
    nats_url: str
    dataset: dataset_pb2_grpc.DatasetServiceStub
    dataset_addr: str
    gateway: ServerThread
    gateway_settings: Any
    base: str
    tuned: str
    evaluator: EvaluatorProcess
    eval_env: dict[str, str]
    events: EventLog
    trainer: trainer_pb2_grpc.TrainerServiceStub
    tiny: Path

    @property
    def stub(self) -> Any:
        return self.evaluator.stub

    @property
    def gateway_v1(self) -> str:
        return f"{self.gateway.url}/v1"

    def version(self, examples: list[dict[str, Any]]) -> str:
        name = f"ev-{uuid.uuid4().hex[:8]}"
        self.dataset.CreateDataset(dpb.CreateDatasetRequest(name=name))
        data = b"".join(json.dumps(e).encode() + b"\n" for e in examples)
        self.dataset.UploadExamples(iter([dpb.UploadExamplesRequest(header=dpb.UploadHeader(dataset=name)),
                                          dpb.UploadExamplesRequest(chunk=data)]))
        self.dataset.FreezeVersion(dpb.FreezeVersionRequest(dataset=name))
        return name

    def spec(self, dataset: str, models: list[pb.ModelRef] | None = None, graders: list[pb.GraderSpec] | None = None,
             **kw: Any) -> pb.EvaluationSpec:
        return pb.EvaluationSpec(
            models=models if models is not None else [pb.ModelRef(model=self.base), pb.ModelRef(model=self.tuned)],
            data=kw.pop("data", pb.EvaluationData(dataset_version=pb.DatasetVersionRef(dataset=dataset, version=1))),
            graders=graders if graders is not None else [pb.GraderSpec(type="word_overlap")],
            generation=kw.pop("generation", pb.GenerationConfig(max_tokens=6, concurrency=2)), seed=7, **kw)

    def create(self, spec: pb.EvaluationSpec) -> pb.Evaluation:
        return self.stub.CreateEvaluation(pb.CreateEvaluationRequest(spec=spec)).evaluation

    def start_gateway(self) -> ServerThread:
        from tunery_gateway.app import create_app

        self.gateway = ServerThread(create_app(self.gateway_settings), port=self.gateway.port).start()
        return self.gateway


def error_of(fn: Any) -> TuneryError:
    with pytest.raises(grpc.RpcError) as info:
        fn()
    return from_rpc_error(info.value)


def publish_success(loop: LoopThread, nats_url: str, job_id: str, adapter_path: str) -> None:
    """The trainer's job-succeeded event, which makes the gateway serve the adapter."""
    async def go() -> None:
        nc = await events.connect(nats_url, name="test-trainer")
        try:
            await events.ensure_stream(nc)
            ev = tpb.JobEvent(job_id=job_id, sequence=9, level="info", message="done",
                              state_change=tpb.StateChange(from_state=common_pb2.JOB_STATE_RUNNING,
                                                           to_state=SUCCEEDED, adapter_path=adapter_path))
            await events.EventPublisher(nc, source="trainer").publish("job.event", job_id, ev,
                                                                      event_id=f"job.{job_id}.test.succeeded")
        finally:
            await nc.close()

    loop.run(go())


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    from tunery_dataset.app import start as start_dataset
    from tunery_dataset.settings import DatasetSettings
    from tunery_gateway.app import create_app
    from tunery_gateway.settings import GatewaySettings
    from tunery_trainer.app import start as start_trainer
    from tunery_trainer.settings import TrainerSettings

    tmp = tmp_path_factory.mktemp("evaluator")
    tiny = build_tiny_llama(tmp / "tiny-llama", data_dir=tmp)
    loop = LoopThread()
    with nats_server(tmp) as nats, contextlib.ExitStack() as stack_exit:
        ds_app = loop.run(start_dataset(DatasetSettings(data_dir=tmp / "ds", nats_url=nats.url, port=free_port(),
                                                        database_url="")))
        dataset_addr = f"127.0.0.1:{ds_app.port}"
        # The trainer on a NATS of its own: the job event below that makes the gateway serve the adapter is about a
        # job the trainer never had (it would retry it forever).
        tr_nats = stack_exit.enter_context(nats_server(tmp / "tr-nats"))
        tr_app = loop.run(start_trainer(TrainerSettings(data_dir=tmp / "tr", nats_url=tr_nats.url, port=free_port(),
                                                        database_url="", dataset_addr=dataset_addr)))
        trainer_addr = f"127.0.0.1:{tr_app.port}"
        gw_settings = GatewaySettings(data_dir=tmp / "gw", base_models=str(tiny), nats_url=nats.url, database_url="",
                                      admin_api_key=ADMIN_KEY, internal_api_key=INTERNAL_KEY,
                                      dataset_addr=dataset_addr, torch_threads=1,
                                      artifacts_dir=str(tmp / "artifacts"), default_max_tokens=16)
        gateway = ServerThread(create_app(gw_settings)).start()
        base, job = tiny.name, "ftjob-evaltest"
        tuned = f"ft:{base}:eval:{job}"
        make_adapter(tiny, tmp / "artifacts" / "jobs" / job / "adapter", seed=1, base_model=str(tiny.resolve()),
                     fine_tuned_model=tuned, job_id=job)
        publish_success(loop, nats.url, job, f"jobs/{job}/adapter")
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        wait_until(f"{tuned} served", lambda: tuned in [m["id"] for m in httpx.get(
            f"{gateway.url}/v1/models", headers=headers).json()["data"]], 30)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TUNERY_", "OTEL_"))}
        env.update(TUNERY_DATA_DIR=str(tmp / "ev"), TUNERY_NATS_URL=nats.url,
                   TUNERY_EVALUATOR_DATASET_ADDR=dataset_addr, TUNERY_EVALUATOR_TRAINER_ADDR=trainer_addr,
                   TUNERY_EVALUATOR_GATEWAY_URL=f"{gateway.url}/v1", TUNERY_EVALUATOR_GATEWAY_API_KEY=INTERNAL_KEY,
                   TUNERY_EVALUATOR_ACK_WAIT_SECONDS="2", TUNERY_EVALUATOR_LOG_LEVEL="INFO")
        evaluator = EvaluatorProcess(env, tmp / "evaluator.log", free_port())
        evaluator.start()
        log = EventLog(loop, nats.url, "tunery.events.evaluation.>")
        ds_channel = client.channel(dataset_addr, timeout=60)
        tr_channel = client.channel(trainer_addr, timeout=60)
        s = Stack(tmp, loop, nats.url, dataset_pb2_grpc.DatasetServiceStub(ds_channel), dataset_addr, gateway,
                  gw_settings, base, tuned, evaluator, env, log, trainer_pb2_grpc.TrainerServiceStub(tr_channel),
                  tiny)
        try:
            yield s
        finally:
            log.close()
            s.evaluator.close()
            s.gateway.stop()
            ds_channel.close()
            tr_channel.close()
            loop.run(tr_app.stop())
            loop.run(ds_app.stop())
            loop.close()


def test_base_against_tuned_streams_results_and_a_summary(stack: Stack) -> None:
    name = stack.version([chat(i) for i in range(4)])
    ne = struct_pb2.Struct()
    ne.update({"operation": "ne"})  # a built-in beside the plugin: the answer is not the reference word for word
    graders = [pb.GraderSpec(type="word_overlap"), pb.GraderSpec(type="string_check", name="differs", config=ne),
               pb.GraderSpec(type="reference_loss")]  # the reference's loss under each model: POST /v1/score
    ev = stack.create(stack.spec(name, graders=graders, display_name="base vs tuned"))
    assert ev.state == common_pb2.JOB_STATE_QUEUED and ev.total_examples == 4
    assert ev.resolved_data.version == 1 and ev.resolved_data.dataset.startswith("ds")
    got, updates = results(stack.stub, ev.id, follow=True)  # follows the run to its end
    assert [r.sequence for r in got] == [1, 2, 3, 4] and sorted(r.index for r in got) == [0, 1, 2, 3]
    final = updates[-1]
    assert final.state == SUCCEEDED and final.finished_examples == 4 and final.errored_examples == 0
    for r in got:
        assert r.evaluation_id == ev.id and r.reference == f"{r.index} doubled is {2 * r.index}."
        assert [m["role"] for m in json.loads(r.input_json)] == ["system", "user"]
        assert [a.model for a in r.answers] == [stack.base, stack.tuned]
        assert all(a.content and not a.error and a.completion_tokens > 0 for a in r.answers)
        assert {(g.grader, g.model) for g in r.grades} == {(g, m) for g in ("word_overlap", "differs",
                                                                            "reference_loss")
                                                           for m in (stack.base, stack.tuned)}
        assert all(g.HasField("score") and not g.error for g in r.grades), r.grades
        assert all(0 <= g.score <= 1 for g in r.grades if g.grader != "reference_loss")
        assert all(g.score > 0 for g in r.grades if g.grader == "reference_loss")  # nats per token, random model
    # The adapter changes what the model says, so the two columns are two models.
    assert any(r.answers[0].content != r.answers[1].content for r in got)
    summary = final.summary
    by_model = {g.model: g for g in summary.graders if g.grader == "word_overlap"}
    assert set(by_model) == {stack.base, stack.tuned}
    for model, g in by_model.items():
        scores = [gr.score for r in got for gr in r.grades if gr.model == model and gr.grader == "word_overlap"]
        assert g.count == 4 and g.errored == 0 and g.higher_is_better
        assert g.mean == pytest.approx(sum(scores) / 4) and g.ci_low <= g.mean <= g.ci_high
        assert g.pass_rate == pytest.approx(sum(s >= 0.5 for s in scores) / 4)
    differs = [g for g in summary.graders if g.grader == "differs"]
    assert [(g.mean, g.pass_rate, g.count) for g in differs] == [(1.0, 1.0, 4), (1.0, 1.0, 4)]
    pair, same, loss = summary.pairs
    assert (pair.model_a, pair.model_b, pair.grader) == (stack.base, stack.tuned, "word_overlap")
    losses = {g.model: g for g in summary.graders if g.grader == "reference_loss"}
    assert not losses[stack.base].higher_is_better and losses[stack.base].extra["perplexity"] > 1
    # Lower is better: the pair's difference is oriented so that positive means the base did better.
    assert loss.grader == "reference_loss" and loss.mean_difference == pytest.approx(
        losses[stack.tuned].mean - losses[stack.base].mean)
    assert (same.grader, same.ties, same.test, same.p_value) == ("differs", 4, "sign", 1.0)
    assert pair.wins + pair.losses + pair.ties == pair.count == 4 and pair.test in ("wilcoxon", "sign")
    assert 0 <= pair.p_value <= 1 and pair.ci_low <= pair.mean_difference <= pair.ci_high
    # Replaying after a position sends only what follows it, then the evaluation as it ended.
    later, end = results(stack.stub, ev.id, after=2)
    assert [r.sequence for r in later] == [3, 4] and end[-1].state == SUCCEEDED
    # Events on NATS: created, then progress, then succeeded with the summary.
    for kind in ("evaluation.created", "evaluation.progress", "evaluation.state_changed"):
        stack.events.wait_for(kind, ev.id)
    _, done, _ = stack.events.wait_for("evaluation.succeeded", ev.id)
    payload = pb.EvaluationEvent()
    done.payload.Unpack(payload)
    assert payload.finished_examples == 4 and len(payload.summary.graders) == 6
    listed = stack.stub.ListEvaluations(pb.ListEvaluationsRequest(model=stack.tuned, dataset=name)).evaluations
    assert [e.id for e in listed] == [ev.id]
    assert not stack.stub.ListEvaluations(pb.ListEvaluationsRequest(
        dataset=name, states=[common_pb2.JOB_STATE_RUNNING])).evaluations


def config(**kw: Any) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(kw)
    return s


def record(i: int) -> dict[str, Any]:
    return {"messages": [{"role": "system", "content": "Reply with the record as one JSON object."},
                         {"role": "user", "content": f"Record {i}?"},
                         {"role": "assistant", "content": json.dumps({"id": i, "double": 2 * i})}]}


def test_every_built_in_grader_in_one_run_the_tiny_model_judging(stack: Stack) -> None:
    n, models = 3, (stack.base, stack.tuned)
    name = stack.version([record(i) for i in range(n)])
    judge = {"model": stack.base, "sampling_params": {"max_tokens": 8}}  # a model the gateway serves judges
    graders = [pb.GraderSpec(type="string_check", config=config(operation="eq")),
               pb.GraderSpec(type="text_similarity", name="bleu", config=config(evaluation_metric="bleu")),
               pb.GraderSpec(type="text_similarity", name="rouge_l", config=config(evaluation_metric="rouge_l")),
               pb.GraderSpec(type="json", config=config(schema={"type": "object", "required": ["id", "double"]},
                                                        match_fields=["id", "double"])),
               pb.GraderSpec(type="score_model", config=config(**judge)),
               pb.GraderSpec(type="label_model", config=config(**judge, labels=["good", "bad"],
                                                               passing_labels=["good"])),
               pb.GraderSpec(type="pairwise_model", config=config(**judge)),
               pb.GraderSpec(type="reference_loss"), pb.GraderSpec(type="latency"), pb.GraderSpec(type="tokens")]
    single = ["string_check", "bleu", "rouge_l", "json", "score_model", "label_model", "reference_loss", "latency",
              "tokens"]
    lower = {"reference_loss", "latency", "tokens"}
    ev = stack.create(stack.spec(name, graders=graders, generation=pb.GenerationConfig(max_tokens=8, concurrency=2)))
    got, updates = results(stack.stub, ev.id, follow=True)
    final = updates[-1]
    assert final.state == SUCCEEDED and final.finished_examples == n and len(got) == n
    judged = {"score_model", "label_model", "pairwise_model"}
    unparseable = 0
    for r in got:
        answers = {a.model: a for a in r.answers}
        assert list(answers) == list(models) and all(a.content and not a.error for a in r.answers)
        one = {(g.grader, g.model): g for g in r.grades if not g.against}
        assert len(one) == len(r.grades) - 1 and set(one) == {(g, m) for g in single for m in models}
        (pair,) = [g for g in r.grades if g.against]  # one verdict per pair of models, asked in both orders
        assert (pair.grader, pair.model, pair.against) == ("pairwise_model", stack.base, stack.tuned)
        for m, a in answers.items():
            assert one["string_check", m].score == float(a.content == r.reference)
            bleu = sacrebleu.sentence_bleu(a.content, [r.reference]).score / 100
            assert one["bleu", m].score == pytest.approx(bleu) and one["bleu", m].label == "bleu"
            assert 0 <= one["rouge_l", m].score <= 1 and one["rouge_l", m].label == "rouge_l"
            try:
                json.loads(a.content)
            except json.JSONDecodeError:  # a random model's answer: malformed JSON scores 0, it is no error
                assert (one["json", m].score, one["json", m].passed, one["json", m].label) == (0, False,
                                                                                               "invalid_json")
            assert one["latency", m].score == pytest.approx(a.latency_ms) and a.latency_ms > 0
            assert one["tokens", m].score == a.completion_tokens and one["tokens", m].label == a.finish_reason
            assert one["reference_loss", m].score > 0 and "perplexity" in one["reference_loss", m].rationale
        for g in [*one.values(), pair]:
            if g.grader not in judged:
                assert not g.error, g
            else:  # the tiny model's verdicts cannot be read: each is counted as such, its raw text kept
                assert g.error == "unparseable_verdict" and g.error_message and not g.HasField("score"), g
                assert g.rationale and (g.grader != "pairwise_model" or "order B-A" in g.rationale), g
                unparseable += 1
    assert unparseable == 5 * n  # score_model and label_model per model, pairwise_model per pair
    assert final.errored_examples == sum(any(g.error for g in r.grades) for r in got)
    assert not final.summary.model_errors
    _, done, _ = stack.events.wait_for("evaluation.succeeded", ev.id)  # the summary rides on the NATS event too
    event = pb.EvaluationEvent()
    done.payload.Unpack(event)
    assert event.summary == final.summary
    # Summaries: one per grader and model, consistent with the results above.
    by = {(s.grader, s.model): s for s in final.summary.graders}
    assert len(by) == len(final.summary.graders) == 2 * (len(single) + 1)
    for (grader, model), s in by.items():
        assert s.count + s.errored == n and s.ci_low <= s.mean <= s.ci_high, s
        assert s.higher_is_better == (grader not in lower), s
        if grader in judged:  # nothing scored, every example errored (a pair's verdict counts for both models)
            assert (s.count, s.errored) == (0, n), s
            continue
        scores = [g.score for r in got for g in r.grades if (g.grader, g.model) == (grader, model)]
        assert s.count == n and s.mean == pytest.approx(sum(scores) / n)
    for m in models:
        loss = by["reference_loss", m]
        assert loss.extra["perplexity"] == pytest.approx(math.exp(loss.mean)) and loss.extra["perplexity"] > 1
        assert by["latency", m].extra["p50"] <= by["latency", m].extra["p95"] <= by["latency", m].extra["max"]
    assert by["reference_loss", stack.base].mean != by["reference_loss", stack.tuned].mean  # the adapter counts
    # Pairs, oriented by higher_is_better: a positive difference always means the base did better.
    pairs = {p.grader: p for p in final.summary.pairs}
    assert len(pairs) == len(final.summary.pairs) == len(single) + 1
    for grader, p in pairs.items():
        assert (p.model_a, p.model_b) == models and p.wins + p.losses + p.ties == p.count
        assert p.ci_low <= p.mean_difference <= p.ci_high and 0 <= p.p_value <= 1, p
        if grader in judged:
            assert (p.count, p.p_value) == (0, 1), p
        else:
            sign = -1 if grader in lower else 1
            a, b = by[grader, stack.base].mean, by[grader, stack.tuned].mean
            assert p.count == n and p.mean_difference == pytest.approx(sign * (a - b)), p


def test_list_graders_shows_the_third_party_grader(stack: Stack) -> None:
    graders = {g.type: g for g in stack.stub.ListGraders(pb.ListGradersRequest()).graders}
    wo = graders["word_overlap"]
    assert wo.package == "tunery-test-grader" and wo.needs_reference and not wo.pairwise and wo.higher_is_better
    built_in = {"string_check", "text_similarity", "json", "score_model", "label_model", "pairwise_model",
                "reference_loss", "latency", "tokens"}
    assert {t for t, g in graders.items() if g.package == "tunery-evaluator"} == built_in
    assert [t for t, g in graders.items() if g.pairwise] == ["pairwise_model"]
    assert not any(graders[t].higher_is_better for t in ("reference_loss", "latency", "tokens"))
    assert "pass_threshold" in wo.config_schema["properties"] and "reference" in wo.description


def test_bad_specs_are_refused_naming_what_and_where(stack: Stack) -> None:
    name = stack.version([chat(i) for i in range(2)])
    before = stack.stub.ListEvaluations(pb.ListEvaluationsRequest()).page.total_size

    err = error_of(lambda: stack.create(stack.spec(name, models=[pb.ModelRef(model=stack.base),
                                                                  pb.ModelRef(model="no-such-model")])))
    assert (err.code, err.field) == ("unknown_model", "models[1].model") and stack.base in err.message
    err = error_of(lambda: stack.create(stack.spec(name, models=[])))
    assert (err.code, err.field) == ("missing_field", "models")
    err = error_of(lambda: stack.create(stack.spec(name, graders=[pb.GraderSpec(type="no_such_grader")])))
    assert (err.code, err.field) == ("unknown_grader", "graders[0].type") and "word_overlap" in err.message
    bad = struct_pb2.Struct()
    bad.update({"pass_threshold": 5})
    err = error_of(lambda: stack.create(stack.spec(name, graders=[pb.GraderSpec(type="word_overlap", config=bad)])))
    assert (err.code, err.field) == ("invalid_grader_config", "graders[0].config.pass_threshold")
    odd = struct_pb2.Struct()
    odd.update({"colour": "blue"})
    err = error_of(lambda: stack.create(stack.spec(name, graders=[pb.GraderSpec(type="word_overlap", config=odd)])))
    assert err.code == "invalid_grader_config" and err.field.startswith("graders[0].config")
    # The draft (version 0) is not a frozen version; an empty draft cannot be frozen at all.
    empty = f"ev-empty-{uuid.uuid4().hex[:6]}"
    stack.dataset.CreateDataset(dpb.CreateDatasetRequest(name=empty))
    draft = stack.spec(empty)
    draft.data.dataset_version.version = 0
    err = error_of(lambda: stack.create(draft))
    assert (err.code, err.field) == ("version_not_frozen", "data.dataset_version.version")
    missing = stack.spec(name)
    missing.data.dataset_version.version = 9
    assert error_of(lambda: stack.create(missing)).code == "version_not_found"
    # Examples with nothing to ask (only an assistant turn) are named.
    lonely = stack.version([chat(0), {"messages": [{"role": "assistant", "content": "hello"}]}])
    err = error_of(lambda: stack.create(stack.spec(lonely)))
    assert err.code == "example_without_input" and "example 1" in err.message
    assert stack.stub.ListEvaluations(pb.ListEvaluationsRequest()).page.total_size == before  # nothing stored


def test_a_model_failing_on_one_example_is_counted_and_the_run_goes_on(stack: Stack) -> None:
    too_long = {"messages": [{"role": "user", "content": "word " * 2500},
                             {"role": "assistant", "content": "ok"}]}
    name = stack.version([chat(0), too_long, chat(2)])
    ev = stack.create(stack.spec(name))
    done = wait_state(stack.stub, ev.id)
    assert done.state == SUCCEEDED and done.finished_examples == 3 and done.errored_examples == 1
    got = {r.index: r for r in results(stack.stub, ev.id)[0]}
    bad = got[1]
    assert all(a.error and a.error_message for a in bad.answers)
    assert all(g.error == "model_error" and not g.HasField("score") for g in bad.grades)
    assert all(not a.error for i in (0, 2) for a in got[i].answers)
    assert dict(done.summary.model_errors) == {stack.base: 1, stack.tuned: 1}
    assert all(g.count == 2 and g.errored == 1 for g in done.summary.graders)


def test_two_evaluations_of_one_spec_at_once_keep_their_results_apart(stack: Stack) -> None:
    name = stack.version([chat(i) for i in range(3)])
    spec = stack.spec(name)
    a, b = stack.create(spec), stack.create(spec)
    assert a.id != b.id
    ra, rb = (wait_state(stack.stub, e.id) for e in (a, b))
    assert ra.state == rb.state == SUCCEEDED
    got_a, got_b = results(stack.stub, a.id)[0], results(stack.stub, b.id)[0]
    assert [r.sequence for r in got_a] == [r.sequence for r in got_b] == [1, 2, 3]
    assert {r.evaluation_id for r in got_a} == {a.id} and {r.evaluation_id for r in got_b} == {b.id}
    # Greedy decoding: the same answers in both, example by example.
    answers = {(r.index, x.model): x.content for r in got_a for x in r.answers}
    assert answers == {(r.index, x.model): x.content for r in got_b for x in r.answers}
    # A retried create with the same idempotency key is the same evaluation.
    keyed = stack.spec(name, idempotency_key=f"k-{uuid.uuid4().hex}")
    first = stack.stub.CreateEvaluation(pb.CreateEvaluationRequest(spec=keyed))
    again = stack.stub.CreateEvaluation(pb.CreateEvaluationRequest(spec=keyed))
    assert again.existing and not first.existing and again.evaluation.id == first.evaluation.id
    wait_state(stack.stub, first.evaluation.id)


def test_finished_evaluations_cannot_be_cancelled_and_hold_their_version(stack: Stack) -> None:
    name = stack.version([chat(i) for i in range(2)])
    ev = stack.create(stack.spec(name))
    wait_state(stack.stub, ev.id, SUCCEEDED)
    err = error_of(lambda: stack.stub.CancelEvaluation(pb.CancelEvaluationRequest(evaluation_id=ev.id)))
    assert err.code == "evaluation_finished" and type(err).__name__ == "FailedPrecondition"
    err = error_of(lambda: stack.dataset.DeleteVersion(dpb.DeleteVersionRequest(dataset=name, version=1)))
    assert type(err).__name__ == "FailedPrecondition" and err.code == "version_in_use"
    stack.stub.DeleteEvaluation(pb.DeleteEvaluationRequest(evaluation_id=ev.id))
    assert error_of(lambda: get(stack.stub, ev.id)).code == "evaluation_not_found"
    stack.dataset.DeleteVersion(dpb.DeleteVersionRequest(dataset=name, version=1))  # released with the evaluation


def test_compare_answers_side_by_side_and_stores_nothing(stack: Stack) -> None:
    before = stack.stub.ListEvaluations(pb.ListEvaluationsRequest()).page.total_size
    judge = struct_pb2.Struct()
    # The tiny model judges: its verdicts are nonsense, but one comes back (or is named unparseable) per pair.
    judge.update({"model": stack.base, "sampling_params": {"max_tokens": 4}, "both_orders": False})
    resp = stack.stub.Compare(pb.CompareRequest(
        conversations=[pb.Conversation(messages=[pb.ChatMessage(role="user", content="Say hi.")]),
                       pb.Conversation(messages=[pb.ChatMessage(role="user", content="Count to three.")])],
        models=[pb.ModelRef(model=stack.base), pb.ModelRef(model=stack.tuned, label="tuned")],
        generation=pb.GenerationConfig(max_tokens=5),
        graders=[pb.GraderSpec(type="word_overlap"), pb.GraderSpec(type="pairwise_model", config=judge)],
        references=["hi there", "one two three"]))
    assert [r.index for r in resp.results] == [0, 1]
    for r in resp.results:
        assert [a.model for a in r.answers] == [stack.base, "tuned"] and all(a.content for a in r.answers)
        overlap = [g for g in r.grades if g.grader == "word_overlap"]
        assert len(overlap) == 2 and all(g.HasField("score") for g in overlap)
        (pair,) = [g for g in r.grades if g.grader == "pairwise_model"]  # one verdict per pair of models
        assert (pair.model, pair.against) == (stack.base, "tuned")
        assert pair.label in ("a", "b", "tie") or pair.error == "unparseable_verdict", pair
    assert stack.stub.ListEvaluations(pb.ListEvaluationsRequest()).page.total_size == before
    err = error_of(lambda: stack.stub.Compare(pb.CompareRequest(
        conversations=[pb.Conversation(messages=[pb.ChatMessage(role="user", content="x")])],
        models=[pb.ModelRef(model="nope")])))
    assert (err.code, err.field) == ("unknown_model", "models[0].model")


def test_the_run_waits_for_the_gateway_and_finishes_when_it_is_back(stack: Stack) -> None:
    name = stack.version([chat(i) for i in range(2)])
    url = stack.gateway_v1
    models = [pb.ModelRef(model=stack.base, base_url=url, api_key=ADMIN_KEY)]
    stack.gateway.stop()  # the gateway goes away
    try:
        ev = stack.create(stack.spec(name, models=models))
        _, waiting, _ = stack.events.wait_for("evaluation.waiting", ev.id, timeout=60)
        payload = pb.EvaluationEvent()
        waiting.payload.Unpack(payload)
        assert payload.error.code == "endpoint_unavailable" and str(stack.gateway.port) in payload.error.message
        assert get(stack.stub, ev.id).state == common_pb2.JOB_STATE_RUNNING
    finally:
        stack.start_gateway()  # and comes back on the same port
    done = wait_state(stack.stub, ev.id)
    assert done.state == SUCCEEDED and done.errored_examples == 0 and done.finished_examples == 2
    assert get(stack.stub, ev.id).spec.models[0].api_key_set and not get(stack.stub, ev.id).spec.models[0].api_key


def test_a_jobs_validation_part_is_what_the_trainer_held_out(stack: Stack) -> None:
    examples = [chat(i) for i in range(16)]
    name = stack.version(examples)

    def job(**kw: Any) -> str:
        spec = tpb.JobSpec(base_model=str(stack.tiny), backend="echo", training_data=tpb.DatasetRef(dataset=name,
                           version=1), hyperparameters=tpb.Hyperparameters(n_epochs=1, batch_size=4), **kw)
        return str(stack.trainer.CreateJob(tpb.CreateJobRequest(spec=spec)).job.id)

    split_job = job(validation_split=0.25, seed=5)
    spec = stack.spec(name, data=pb.EvaluationData(job_id=split_job))
    ev = stack.create(spec)
    _, held_out = split_examples(examples, 0.25, 5)  # the trainer's split, redone here by the same function
    assert ev.total_examples == validation_count(16, 0.25) == len(held_out) and ev.job_id == split_job
    got = results(stack.stub, ev.id, follow=True)[0]
    asked = sorted(json.loads(r.input_json)[-1]["content"] for r in got)
    assert asked == sorted(examples[i]["messages"][1]["content"] for i in held_out)
    listed = stack.stub.ListEvaluations(pb.ListEvaluationsRequest(job_id=split_job)).evaluations
    assert [e.id for e in listed] == [ev.id]
    # A job with a validation version: that version's examples.
    val = stack.version([chat(100 + i) for i in range(2)])
    version_job = job(validation_data=tpb.DatasetRef(dataset=val, version=1))
    ev2 = stack.create(stack.spec(name, data=pb.EvaluationData(job_id=version_job)))
    assert ev2.total_examples == 2 and ev2.resolved_data.dataset != ev.resolved_data.dataset
    wait_state(stack.stub, ev2.id)
    err = error_of(lambda: stack.create(stack.spec(name, data=pb.EvaluationData(job_id=job()))))
    assert (err.code, err.field) == ("job_without_validation", "data.job_id")
    assert error_of(lambda: stack.create(stack.spec(name, data=pb.EvaluationData(job_id="ftjob-none")))).code \
        == "job_not_found"


# ---- restarts ------------------------------------------------------------------------------------------------------
class Gate:
    """An OpenAI-compatible endpoint in front of the gateway that counts each prompt's requests and, once `allow`
    requests went through, holds the next ones until `release()` (so a test can act while one is in flight)."""

    def __init__(self, upstream: str, allow: int) -> None:
        self.upstream, self.allow = upstream, allow
        self.counts: Counter[str] = Counter()
        self.passed = 0
        self.held = threading.Event()
        self.open = threading.Event()
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def chat(request: Request) -> Any:
            import asyncio

            body = await request.json()
            self.counts[body["messages"][-1]["content"]] += 1
            if self.passed >= self.allow:
                self.held.set()
                while not self.open.is_set():
                    await asyncio.sleep(0.02)
            self.passed += 1
            async with httpx.AsyncClient(timeout=60) as c:
                r = await c.post(f"{self.upstream}/chat/completions", json=body,
                                 headers={"Authorization": request.headers.get("authorization", "")})
            return JSONResponse(r.json(), r.status_code)

        self.server = ServerThread(app).start()

    def release(self) -> None:
        self.open.set()


def test_a_killed_evaluator_resumes_without_recomputing_finished_examples(stack: Stack) -> None:
    n = 5
    name = stack.version([chat(i) for i in range(n)])
    gate = Gate(stack.gateway_v1, allow=2)
    try:
        models = [pb.ModelRef(model=stack.base, base_url=f"{gate.server.url}/v1", api_key=ADMIN_KEY)]
        ev = stack.create(stack.spec(name, models=models, generation=pb.GenerationConfig(max_tokens=4,
                                                                                          concurrency=1)))
        assert gate.held.wait(60), "the third request never reached the endpoint"
        stored = wait_until("two results stored", lambda: get(stack.stub, ev.id).finished_examples == 2 and
                            results(stack.stub, ev.id)[0])
        stack.evaluator.kill()  # SIGKILL with the third example in flight
        gate.release()
        stack.evaluator.start()
        done = wait_state(stack.stub, ev.id, timeout=120)
        assert done.state == SUCCEEDED and done.finished_examples == n and done.attempts == 2
        after = results(stack.stub, ev.id)[0]
        assert [r.sequence for r in after] == list(range(1, n + 1))
        # The two examples stored before the kill kept their results and were not asked again.
        assert [(r.index, r.finish_time) for r in after[:2]] == [(r.index, r.finish_time) for r in stored]
        prompts = {i: f"What is {i} doubled?" for i in range(n)}
        assert [gate.counts[prompts[i]] for i in range(n)] == [1, 1, 2, 1, 1]  # only the one in flight twice
    finally:
        gate.release()
        gate.server.stop()
        if stack.evaluator.proc is None or stack.evaluator.proc.poll() is not None:
            stack.evaluator.start()


def test_cancelling_a_running_evaluation_keeps_what_it_finished(stack: Stack) -> None:
    name = stack.version([chat(i) for i in range(4)])
    gate = Gate(stack.gateway_v1, allow=1)
    try:
        models = [pb.ModelRef(model=stack.base, base_url=f"{gate.server.url}/v1", api_key=ADMIN_KEY)]
        ev = stack.create(stack.spec(name, models=models, generation=pb.GenerationConfig(max_tokens=4,
                                                                                          concurrency=1)))
        assert gate.held.wait(60), "the second request never reached the endpoint"
        cancelled = stack.stub.CancelEvaluation(pb.CancelEvaluationRequest(evaluation_id=ev.id)).evaluation
        assert cancelled.state == common_pb2.JOB_STATE_CANCELLED and cancelled.finished_examples == 1
        assert [g.count for g in cancelled.summary.graders] == [1]
        gate.release()  # the answer in flight comes back after the cancel: it is not stored
        stack.events.wait_for("evaluation.cancelled", ev.id)
        wait_until("the run noticed", lambda: f"evaluation {ev.id} ended cancelled" in stack.evaluator.log(), 60)
        assert get(stack.stub, ev.id).finished_examples == 1 and len(results(stack.stub, ev.id)[0]) == 1
        err = error_of(lambda: stack.stub.CancelEvaluation(pb.CancelEvaluationRequest(evaluation_id=ev.id)))
        assert err.code == "evaluation_finished"
    finally:
        gate.release()
        gate.server.stop()


def test_cancelling_stops_waiting_for_an_endpoint(stack: Stack) -> None:
    name = stack.version([chat(0)])
    dead = f"http://127.0.0.1:{free_port()}/v1"
    ev = stack.create(stack.spec(name, models=[pb.ModelRef(model=stack.base, base_url=dead)]))
    stack.events.wait_for("evaluation.waiting", ev.id, timeout=60)
    stack.stub.CancelEvaluation(pb.CancelEvaluationRequest(evaluation_id=ev.id))
    # The run lets go of its worker slot now, not after gateway_wait_seconds (300 s here).
    wait_until("the run ended", lambda: f"evaluation {ev.id} ended cancelled" in stack.evaluator.log(), 60)
    assert get(stack.stub, ev.id).state == common_pb2.JOB_STATE_CANCELLED


def test_an_endpoint_that_stays_away_or_a_rejected_key_is_named_clearly(stack: Stack) -> None:
    name = stack.version([chat(0)])
    dead = f"http://127.0.0.1:{free_port()}/v1"
    stack.evaluator.stop()  # one restart for both: a short wait for endpoints, and a gateway key the gateway rejects
    stack.evaluator.start(TUNERY_EVALUATOR_GATEWAY_WAIT_SECONDS="1",
                          TUNERY_EVALUATOR_GATEWAY_API_KEY="tny-000000000000-not-a-key-the-gateway-knows")
    try:
        err = error_of(lambda: stack.create(stack.spec(name)))  # the models are checked with the gateway
        assert (type(err).__name__, err.code, err.field) == ("FailedPrecondition", "gateway_rejected_key",
                                                             "models[0].model")
        assert "TUNERY_EVALUATOR_GATEWAY_API_KEY" in err.message and str(stack.gateway.port) in err.message
        # An external endpoint's wrong key: each answer says which endpoint rejected the key of which model.
        wrong = [pb.ModelRef(model=stack.base, base_url=stack.gateway_v1, api_key="tny-000000000000-wrong")]
        ev = stack.create(stack.spec(name, models=wrong))
        done = wait_state(stack.stub, ev.id, timeout=60)
        assert done.state == SUCCEEDED and done.errored_examples == 1
        (answer,) = results(stack.stub, ev.id)[0][0].answers
        assert answer.error == "unauthenticated" and stack.gateway_v1 in answer.error_message
        assert stack.base in answer.error_message and "invalid API key" in answer.error_message
        ev = stack.create(stack.spec(name, models=[pb.ModelRef(model=stack.base, base_url=dead)]))
        done = wait_state(stack.stub, ev.id, timeout=60)
        assert done.state == FAILED and done.error.code == "endpoint_unavailable"
        assert dead.removesuffix("/v1") in done.error.message and "could not be reached" in done.error.message
    finally:
        stack.evaluator.stop()
        stack.evaluator.start()
