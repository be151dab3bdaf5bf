"""The evaluator end to end, all real: nats-server, the dataset and trainer services on gRPC, the gateway (uvicorn)
serving the tiny random Llama and a LoRA adapter of it, and `python -m tunery_evaluator` as a process, with the
third-party grader `word_overlap` installed as its own package: runs and their results, every grader, the specs it
refuses, Compare. The session's `evaluation` fixture (tests/evalstack.py) is that stack, shared with
test_evaluator_recovery.py (outages, restarts, cancelling), test_cli_evals.py and test_trainer_evaluation.py; every
wait is on something observed (a state, a stored result, a NATS event), never a fixed sleep."""

from __future__ import annotations

import contextlib
import json
import math
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import grpc
import pytest
import sacrebleu
from evalstack import SUCCEEDED, chat, config, error_of
from google.protobuf import struct_pb2

from tunery.common.v1 import common_pb2
from tunery.dataset.v1 import dataset_pb2 as dpb
from tunery.evaluator.v1 import evaluator_pb2 as pb
from tunery.split import split_examples, validation_count
from tunery.trainer.v1 import trainer_pb2 as tpb
from tunery_evaluator.testing import get, results, wait_state

if TYPE_CHECKING:
    from evalstack import Evaluation


def test_base_against_tuned_streams_results_and_a_summary(evaluation: Evaluation) -> None:
    name = evaluation.version([chat(i) for i in range(4)])
    ne = struct_pb2.Struct()
    ne.update({"operation": "ne"})  # a built-in beside the plugin: the answer is not the reference word for word
    graders = [pb.GraderSpec(type="word_overlap"), pb.GraderSpec(type="string_check", name="differs", config=ne),
               pb.GraderSpec(type="reference_loss")]  # the reference's loss under each model: POST /v1/score
    ev = evaluation.create(evaluation.spec(name, graders=graders, display_name="base vs tuned"))
    assert ev.state == common_pb2.JOB_STATE_QUEUED and ev.total_examples == 4
    assert ev.resolved_data.version == 1 and ev.resolved_data.dataset.startswith("ds")
    got, updates = results(evaluation.stub, ev.id, follow=True)  # follows the run to its end
    assert [r.sequence for r in got] == [1, 2, 3, 4] and sorted(r.index for r in got) == [0, 1, 2, 3]
    final = updates[-1]
    assert final.state == SUCCEEDED and final.finished_examples == 4 and final.errored_examples == 0
    for r in got:
        assert r.evaluation_id == ev.id and r.reference == f"{r.index} doubled is {2 * r.index}."
        assert [m["role"] for m in json.loads(r.input_json)] == ["system", "user"]
        assert [a.model for a in r.answers] == [evaluation.base, evaluation.tuned]
        assert all(a.content and not a.error and a.completion_tokens > 0 for a in r.answers)
        assert {(g.grader, g.model) for g in r.grades} == {(g, m) for g in ("word_overlap", "differs",
                                                                            "reference_loss")
                                                           for m in (evaluation.base, evaluation.tuned)}
        assert all(g.HasField("score") and not g.error for g in r.grades), r.grades
        assert all(0 <= g.score <= 1 for g in r.grades if g.grader != "reference_loss")
        assert all(g.score > 0 for g in r.grades if g.grader == "reference_loss")  # nats per token, random model
    # The adapter changes what the model says, so the two columns are two models.
    assert any(r.answers[0].content != r.answers[1].content for r in got)
    summary = final.summary
    by_model = {g.model: g for g in summary.graders if g.grader == "word_overlap"}
    assert set(by_model) == {evaluation.base, evaluation.tuned}
    for model, g in by_model.items():
        scores = [gr.score for r in got for gr in r.grades if gr.model == model and gr.grader == "word_overlap"]
        assert g.count == 4 and g.errored == 0 and g.higher_is_better
        assert g.mean == pytest.approx(sum(scores) / 4) and g.ci_low <= g.mean <= g.ci_high
        assert g.pass_rate == pytest.approx(sum(s >= 0.5 for s in scores) / 4)
    differs = [g for g in summary.graders if g.grader == "differs"]
    assert [(g.mean, g.pass_rate, g.count) for g in differs] == [(1.0, 1.0, 4), (1.0, 1.0, 4)]
    pair, same, loss = summary.pairs
    assert (pair.model_a, pair.model_b, pair.grader) == (evaluation.base, evaluation.tuned, "word_overlap")
    losses = {g.model: g for g in summary.graders if g.grader == "reference_loss"}
    assert not losses[evaluation.base].higher_is_better and losses[evaluation.base].extra["perplexity"] > 1
    # Lower is better: the pair's difference is oriented so that positive means the base did better.
    assert loss.grader == "reference_loss" and loss.mean_difference == pytest.approx(
        losses[evaluation.tuned].mean - losses[evaluation.base].mean)
    assert (same.grader, same.ties, same.test, same.p_value) == ("differs", 4, "sign", 1.0)
    assert pair.wins + pair.losses + pair.ties == pair.count == 4 and pair.test in ("wilcoxon", "sign")
    assert 0 <= pair.p_value <= 1 and pair.ci_low <= pair.mean_difference <= pair.ci_high
    # Replaying after a position sends only what follows it, then the evaluation as it ended.
    later, end = results(evaluation.stub, ev.id, after=2)
    assert [r.sequence for r in later] == [3, 4] and end[-1].state == SUCCEEDED
    # Events on NATS: created, then progress, then succeeded with the summary.
    for kind in ("evaluation.created", "evaluation.progress", "evaluation.state_changed"):
        evaluation.events.wait_for(kind, ev.id)
    _, done, _ = evaluation.events.wait_for("evaluation.succeeded", ev.id)
    payload = pb.EvaluationEvent()
    done.payload.Unpack(payload)
    assert payload.finished_examples == 4 and len(payload.summary.graders) == 6
    listed = evaluation.stub.ListEvaluations(pb.ListEvaluationsRequest(model=evaluation.tuned,
                                                                       dataset=name)).evaluations
    assert [e.id for e in listed] == [ev.id]
    assert not evaluation.stub.ListEvaluations(pb.ListEvaluationsRequest(
        dataset=name, states=[common_pb2.JOB_STATE_RUNNING])).evaluations


def record(i: int) -> dict[str, Any]:
    return {"messages": [{"role": "system", "content": "Reply with the record as one JSON object."},
                         {"role": "user", "content": f"Record {i}?"},
                         {"role": "assistant", "content": json.dumps({"id": i, "double": 2 * i})}]}


def test_every_built_in_grader_in_one_run_the_tiny_model_judging(evaluation: Evaluation) -> None:
    n, models = 3, (evaluation.base, evaluation.tuned)
    name = evaluation.version([record(i) for i in range(n)])
    judge = {"model": evaluation.base, "sampling_params": {"max_tokens": 8}}  # a model the gateway serves judges
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
    generation = pb.GenerationConfig(max_tokens=8, concurrency=2)
    ev = evaluation.create(evaluation.spec(name, graders=graders, generation=generation))
    got, updates = results(evaluation.stub, ev.id, follow=True)
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
        assert (pair.grader, pair.model, pair.against) == ("pairwise_model", evaluation.base, evaluation.tuned)
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
    _, done, _ = evaluation.events.wait_for("evaluation.succeeded", ev.id)  # the summary rides on the NATS event too
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
    # The adapter counts.
    assert by["reference_loss", evaluation.base].mean != by["reference_loss", evaluation.tuned].mean
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
            a, b = by[grader, evaluation.base].mean, by[grader, evaluation.tuned].mean
            assert p.count == n and p.mean_difference == pytest.approx(sign * (a - b)), p


def test_list_graders_shows_the_third_party_grader(evaluation: Evaluation) -> None:
    graders = {g.type: g for g in evaluation.stub.ListGraders(pb.ListGradersRequest()).graders}
    wo = graders["word_overlap"]
    assert wo.package == "tunery-test-grader" and wo.needs_reference and not wo.pairwise and wo.higher_is_better
    built_in = {"string_check", "text_similarity", "json", "score_model", "label_model", "pairwise_model",
                "reference_loss", "latency", "tokens"}
    assert {t for t, g in graders.items() if g.package == "tunery-evaluator"} == built_in
    assert [t for t, g in graders.items() if g.pairwise] == ["pairwise_model"]
    assert not any(graders[t].higher_is_better for t in ("reference_loss", "latency", "tokens"))
    assert "pass_threshold" in wo.config_schema["properties"] and "reference" in wo.description


def test_bad_specs_are_refused_naming_what_and_where(evaluation: Evaluation) -> None:
    name = evaluation.version([chat(i) for i in range(2)])
    before = evaluation.stub.ListEvaluations(pb.ListEvaluationsRequest()).page.total_size

    two = [pb.ModelRef(model=evaluation.base), pb.ModelRef(model="no-such-model")]
    err = error_of(lambda: evaluation.create(evaluation.spec(name, models=two)))
    assert (err.code, err.field) == ("unknown_model", "models[1].model") and evaluation.base in err.message
    err = error_of(lambda: evaluation.create(evaluation.spec(name, models=[])))
    assert (err.code, err.field) == ("missing_field", "models")
    err = error_of(lambda: evaluation.create(evaluation.spec(name, graders=[pb.GraderSpec(type="no_such_grader")])))
    assert (err.code, err.field) == ("unknown_grader", "graders[0].type") and "word_overlap" in err.message
    bad = struct_pb2.Struct()
    bad.update({"pass_threshold": 5})
    overlap = [pb.GraderSpec(type="word_overlap", config=bad)]
    err = error_of(lambda: evaluation.create(evaluation.spec(name, graders=overlap)))
    assert (err.code, err.field) == ("invalid_grader_config", "graders[0].config.pass_threshold")
    odd = struct_pb2.Struct()
    odd.update({"colour": "blue"})
    overlap = [pb.GraderSpec(type="word_overlap", config=odd)]
    err = error_of(lambda: evaluation.create(evaluation.spec(name, graders=overlap)))
    assert err.code == "invalid_grader_config" and err.field.startswith("graders[0].config")
    # The draft (version 0) is not a frozen version; an empty draft cannot be frozen at all.
    empty = f"ev-empty-{uuid.uuid4().hex[:6]}"
    evaluation.dataset.CreateDataset(dpb.CreateDatasetRequest(name=empty))
    draft = evaluation.spec(empty)
    draft.data.dataset_version.version = 0
    err = error_of(lambda: evaluation.create(draft))
    assert (err.code, err.field) == ("version_not_frozen", "data.dataset_version.version")
    missing = evaluation.spec(name)
    missing.data.dataset_version.version = 9
    assert error_of(lambda: evaluation.create(missing)).code == "version_not_found"
    # Examples with nothing to ask (only an assistant turn) are named.
    lonely = evaluation.version([chat(0), {"messages": [{"role": "assistant", "content": "hello"}]}])
    err = error_of(lambda: evaluation.create(evaluation.spec(lonely)))
    assert err.code == "example_without_input" and "example 1" in err.message
    assert evaluation.stub.ListEvaluations(pb.ListEvaluationsRequest()).page.total_size == before  # nothing stored


def test_a_model_failing_on_one_example_is_counted_and_the_run_goes_on(evaluation: Evaluation) -> None:
    too_long = {"messages": [{"role": "user", "content": "word " * 2500},
                             {"role": "assistant", "content": "ok"}]}
    name = evaluation.version([chat(0), too_long, chat(2)])
    ev = evaluation.create(evaluation.spec(name))
    done = wait_state(evaluation.stub, ev.id)
    assert done.state == SUCCEEDED and done.finished_examples == 3 and done.errored_examples == 1
    got = {r.index: r for r in results(evaluation.stub, ev.id)[0]}
    bad = got[1]
    assert all(a.error and a.error_message for a in bad.answers)
    assert all(g.error == "model_error" and not g.HasField("score") for g in bad.grades)
    assert all(not a.error for i in (0, 2) for a in got[i].answers)
    assert dict(done.summary.model_errors) == {evaluation.base: 1, evaluation.tuned: 1}
    assert all(g.count == 2 and g.errored == 1 for g in done.summary.graders)


def test_two_evaluations_of_one_spec_at_once_keep_their_results_apart(evaluation: Evaluation) -> None:
    name = evaluation.version([chat(i) for i in range(3)])
    spec = evaluation.spec(name)
    a, b = evaluation.create(spec), evaluation.create(spec)
    assert a.id != b.id
    ra, rb = (wait_state(evaluation.stub, e.id) for e in (a, b))
    assert ra.state == rb.state == SUCCEEDED
    got_a, got_b = results(evaluation.stub, a.id)[0], results(evaluation.stub, b.id)[0]
    assert [r.sequence for r in got_a] == [r.sequence for r in got_b] == [1, 2, 3]
    assert {r.evaluation_id for r in got_a} == {a.id} and {r.evaluation_id for r in got_b} == {b.id}
    # Greedy decoding: the same answers in both, example by example.
    answers = {(r.index, x.model): x.content for r in got_a for x in r.answers}
    assert answers == {(r.index, x.model): x.content for r in got_b for x in r.answers}
    # A retried create with the same idempotency key is the same evaluation.
    keyed = evaluation.spec(name, idempotency_key=f"k-{uuid.uuid4().hex}")
    first = evaluation.stub.CreateEvaluation(pb.CreateEvaluationRequest(spec=keyed))
    again = evaluation.stub.CreateEvaluation(pb.CreateEvaluationRequest(spec=keyed))
    assert again.existing and not first.existing and again.evaluation.id == first.evaluation.id
    wait_state(evaluation.stub, first.evaluation.id)


def test_finished_evaluations_cannot_be_cancelled_and_hold_their_version(evaluation: Evaluation) -> None:
    name = evaluation.version([chat(i) for i in range(2)])
    ev = evaluation.create(evaluation.spec(name))
    wait_state(evaluation.stub, ev.id, SUCCEEDED)
    err = error_of(lambda: evaluation.stub.CancelEvaluation(pb.CancelEvaluationRequest(evaluation_id=ev.id)))
    assert err.code == "evaluation_finished" and type(err).__name__ == "FailedPrecondition"
    err = error_of(lambda: evaluation.dataset.DeleteVersion(dpb.DeleteVersionRequest(dataset=name, version=1)))
    assert type(err).__name__ == "FailedPrecondition" and err.code == "version_in_use"
    evaluation.stub.DeleteEvaluation(pb.DeleteEvaluationRequest(evaluation_id=ev.id))
    assert error_of(lambda: get(evaluation.stub, ev.id)).code == "evaluation_not_found"
    evaluation.dataset.DeleteVersion(dpb.DeleteVersionRequest(dataset=name, version=1))  # released with the evaluation


def test_compare_answers_side_by_side_and_stores_nothing(evaluation: Evaluation) -> None:
    before = evaluation.stub.ListEvaluations(pb.ListEvaluationsRequest()).page.total_size
    judge = struct_pb2.Struct()
    # The tiny model judges: its verdicts are nonsense, but one comes back (or is named unparseable) per pair.
    judge.update({"model": evaluation.base, "sampling_params": {"max_tokens": 4}, "both_orders": False})
    resp = evaluation.stub.Compare(pb.CompareRequest(
        conversations=[pb.Conversation(messages=[pb.ChatMessage(role="user", content="Say hi.")]),
                       pb.Conversation(messages=[pb.ChatMessage(role="user", content="Count to three.")])],
        models=[pb.ModelRef(model=evaluation.base), pb.ModelRef(model=evaluation.tuned, label="tuned")],
        generation=pb.GenerationConfig(max_tokens=5),
        graders=[pb.GraderSpec(type="word_overlap"), pb.GraderSpec(type="pairwise_model", config=judge)],
        references=["hi there", "one two three"]))
    assert [r.index for r in resp.results] == [0, 1]
    for r in resp.results:
        assert [a.model for a in r.answers] == [evaluation.base, "tuned"] and all(a.content for a in r.answers)
        overlap = [g for g in r.grades if g.grader == "word_overlap"]
        assert len(overlap) == 2 and all(g.HasField("score") for g in overlap)
        (pair,) = [g for g in r.grades if g.grader == "pairwise_model"]  # one verdict per pair of models
        assert (pair.model, pair.against) == (evaluation.base, "tuned")
        assert pair.label in ("a", "b", "tie") or pair.error == "unparseable_verdict", pair
    assert evaluation.stub.ListEvaluations(pb.ListEvaluationsRequest()).page.total_size == before
    err = error_of(lambda: evaluation.stub.Compare(pb.CompareRequest(
        conversations=[pb.Conversation(messages=[pb.ChatMessage(role="user", content="x")])],
        models=[pb.ModelRef(model="nope")])))
    assert (err.code, err.field) == ("unknown_model", "models[0].model")


def test_a_jobs_validation_part_is_what_the_trainer_held_out(evaluation: Evaluation) -> None:
    examples = [chat(i) for i in range(16)]
    name = evaluation.version(examples)
    jobs: list[str] = []

    def job(**kw: Any) -> str:
        spec = tpb.JobSpec(base_model=str(evaluation.stack.tiny_model), backend="echo",
                           training_data=tpb.DatasetRef(dataset=name, version=1),
                           hyperparameters=tpb.Hyperparameters(n_epochs=1, batch_size=4), **kw)
        jobs.append(evaluation.trainer.CreateJob(tpb.CreateJobRequest(spec=spec)).job.id)
        return jobs[-1]

    try:
        validation_parts(evaluation, name, examples, job)
    finally:  # the jobs are only read for their split: the session's workers (if any run) need not train them
        for job_id in jobs:
            with contextlib.suppress(grpc.RpcError):  # one that ended already
                evaluation.trainer.CancelJob(tpb.CancelJobRequest(job_id=job_id))


def validation_parts(evaluation: Evaluation, name: str, examples: list[dict[str, Any]],
                     job: Callable[..., str]) -> None:
    split_job = job(validation_split=0.25, seed=5)
    spec = evaluation.spec(name, data=pb.EvaluationData(job_id=split_job))
    ev = evaluation.create(spec)
    _, held_out = split_examples(examples, 0.25, 5)  # the trainer's split, redone here by the same function
    assert ev.total_examples == validation_count(16, 0.25) == len(held_out) and ev.job_id == split_job
    got = results(evaluation.stub, ev.id, follow=True)[0]
    asked = sorted(json.loads(r.input_json)[-1]["content"] for r in got)
    assert asked == sorted(examples[i]["messages"][1]["content"] for i in held_out)
    listed = evaluation.stub.ListEvaluations(pb.ListEvaluationsRequest(job_id=split_job)).evaluations
    assert [e.id for e in listed] == [ev.id]
    # A job with a validation version: that version's examples.
    val = evaluation.version([chat(100 + i) for i in range(2)])
    version_job = job(validation_data=tpb.DatasetRef(dataset=val, version=1))
    ev2 = evaluation.create(evaluation.spec(name, data=pb.EvaluationData(job_id=version_job)))
    assert ev2.total_examples == 2 and ev2.resolved_data.dataset != ev.resolved_data.dataset
    wait_state(evaluation.stub, ev2.id)
    err = error_of(lambda: evaluation.create(evaluation.spec(name, data=pb.EvaluationData(job_id=job()))))
    assert (err.code, err.field) == ("job_without_validation", "data.job_id")
    none = evaluation.spec(name, data=pb.EvaluationData(job_id="ftjob-none"))
    assert error_of(lambda: evaluation.create(none)).code == "job_not_found"
