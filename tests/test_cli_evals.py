"""`tunery eval ...` and `tunery jobs create --eval-...`.

First how the CLI reads what the user types (graders, models, files) and how an evaluation reads back (the summary
and pairwise tables in 100 columns, examples side by side, JSONL and CSV exports), on real protobuf messages; then
the commands end to end as a user runs them (subprocesses) against the session's services (tests/conftest.py):
a real evaluator generating through a real gateway that serves the tiny model.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
import typer
from rich.console import Console

from tunery.cli import evalexport, evalspec, evalview
from tunery.common.v1 import common_pb2
from tunery.evaluator.v1 import evaluator_pb2 as epb
from tunery.runtime.natsd import free_port
from tunery.trainer.v1 import trainer_pb2 as tpb

if TYPE_CHECKING:
    from conftest import Evaluation, Stack, Workers


def render(*tables: object, width: int = 100) -> str:
    """What a 100-column terminal shows, without colour (rich drops styles when it writes to no terminal)."""
    buf = io.StringIO()
    console = Console(file=buf, width=width, color_system=None, highlight=False)
    for t in tables:
        console.print(t)
    text = buf.getvalue()
    assert "\x1b[" not in text
    widest = max(len(line) for line in text.splitlines())
    assert widest <= width, f"{widest} columns:\n{text}"
    return text


# ---- what the user types ----------------------------------------------------------------------------------------
def test_grader_options_parse_type_name_and_json_config() -> None:
    g = evalspec.parse_grader('exact=string_check:{"operation": "eq", "reference": "{{item.reference}}"}')
    assert (g.type, g.name) == ("string_check", "exact")
    assert dict(g.config) == {"operation": "eq", "reference": "{{item.reference}}"}
    plain = evalspec.parse_grader("latency")
    assert (plain.type, plain.name, len(plain.config.fields)) == ("latency", "", 0)
    with pytest.raises(typer.BadParameter, match="the config of grader 'json' is not JSON"):
        evalspec.parse_grader("json:{not json", "--eval-grader")
    with pytest.raises(typer.BadParameter, match="must be a JSON object"):
        evalspec.parse_grader("string_check:[1]")
    with pytest.raises(typer.BadParameter, match="names no grader type"):
        evalspec.parse_grader("name=:{}")


def test_graders_file_names_the_entry_at_fault(tmp_path: Path) -> None:
    path = tmp_path / "graders.json"
    path.write_text(json.dumps({"graders": [{"type": "tokens"}, {"type": "json", "name": "valid", "config": {}}]}))
    assert [(g.type, g.name) for g in evalspec.graders_from_file(path)] == [("tokens", ""), ("json", "valid")]
    path.write_text(json.dumps([{"type": "tokens"}, {"type": "json", "weight": 2}]))
    with pytest.raises(typer.BadParameter, match=r"graders\[1\] has unknown keys \['weight'\]"):
        evalspec.graders_from_file(path)
    path.write_text(json.dumps([{"name": "x"}]))
    with pytest.raises(typer.BadParameter, match=r"graders\[0\] needs a \"type\""):
        evalspec.graders_from_file(path)


def test_model_arguments() -> None:
    m = evalspec.model_ref("ft:smollm2-135m-instruct:demo:ftjob-1")
    assert (m.model, m.label, m.base_url) == ("ft:smollm2-135m-instruct:demo:ftjob-1", "", "")
    ext = evalspec.model_ref("gpt=gpt-4o-mini@https://api.example.com/v1", api_key="sk-1")
    assert (ext.label, ext.model, ext.base_url, ext.api_key) == ("gpt", "gpt-4o-mini", "https://api.example.com/v1",
                                                                 "sk-1")
    assert evalspec.model_ref("base=smollm2", api_key="sk-1").api_key == "", "a key only goes to an endpoint"
    with pytest.raises(typer.BadParameter, match="http"):
        evalspec.model_ref("m@ftp://x")


# ---- what comes back --------------------------------------------------------------------------------------------
def summary() -> epb.EvaluationSummary:
    return epb.EvaluationSummary(
        graders=[
            epb.GraderSummary(grader="exact", model="base", mean=0.25, ci_low=0.05, ci_high=0.5, pass_rate=0.25,
                              count=8, higher_is_better=True),
            epb.GraderSummary(grader="exact", model="fine-tuned", mean=0.625, ci_low=0.41, ci_high=0.83,
                              pass_rate=0.625, count=8, errored=1, higher_is_better=True),
            epb.GraderSummary(grader="latency", model="fine-tuned", mean=812.5, ci_low=640.0, ci_high=990.0,
                              count=8, higher_is_better=False),
        ],
        pairs=[epb.PairwiseSummary(grader="exact", model_a="fine-tuned", model_b="base", wins=4, losses=1, ties=3,
                                   mean_difference=0.375, ci_low=0.125, ci_high=0.625, p_value=0.0412,
                                   test="wilcoxon", count=8)],
        model_errors={"fine-tuned": 1, "base": 0},
    )


def test_summary_and_pairwise_tables_fit_100_columns() -> None:
    s = summary()
    text = render(evalview.summary_table(s), evalview.pairs_table(s))
    assert "0.625 [0.410, 0.830]" in text and "62.5%" in text
    assert "812.500 [640.000, 990.000]" in text
    assert "latency (lower is better)" in text
    fine_row = next(line for line in text.splitlines() if "fine-tuned" in line and "0.625" in line)
    assert fine_row.rstrip("│ ").split()[-1] == "1", "the errored count ends the row"
    pair = next(line for line in text.splitlines() if "fine-tuned vs base" in line)
    assert "4/1/3" in pair and "+0.375 [+0.125, +0.625]" in pair and "0.0412 (wilcoxon)" in pair
    assert evalview.model_errors_line(s) == "fine-tuned: 1"
    assert evalview.summary_table(epb.EvaluationSummary()) is None


def results() -> list[epb.ExampleResult]:
    """Two examples finished out of order; a model error, a grader error and a pairwise verdict."""
    def answers(i: int) -> list[epb.ModelAnswer]:
        return [epb.ModelAnswer(model="base", content=f"{i}?", finish_reason="stop", completion_tokens=2),
                epb.ModelAnswer(model="fine-tuned", content=f"{2 * i}." if i else "",
                                error="" if i else "endpoint_error",
                                error_message="" if i else "the gateway answered 503")]

    def grades(i: int) -> list[epb.Grade]:
        return [epb.Grade(grader="exact", model="base", score=0.0, passed=False),
                epb.Grade(grader="exact", model="fine-tuned", score=1.0, passed=True) if i else
                epb.Grade(grader="exact", model="fine-tuned", error="model_error"),
                epb.Grade(grader="judge", model="fine-tuned", against="base", label="a", score=1.0,
                          rationale="closer to the reference")]

    return [epb.ExampleResult(evaluation_id="eval-1", index=i, example_id=f"ex-{i}", sequence=seq,
                              input_json=json.dumps([{"role": "system", "content": "Double it."},
                                                     {"role": "user", "content": f"{i}?"}]),
                              reference=f"{2 * i}.", answers=answers(i), grades=grades(i))
            for i, seq in ((3, 1), (0, 2))]


def test_examples_side_by_side() -> None:
    r = results()[0]
    text = render(evalview.example_table(r, ["base", "fine-tuned"], ["exact", "judge"]))
    assert "example 3 ex-3" in text
    assert "input: 3? (after 1 earlier turns)" in text and "reference: 6." in text
    answer = next(line for line in text.splitlines() if "answer" in line)
    assert "3?" in answer and "6." in answer
    exact = next(line for line in text.splitlines() if "exact" in line)
    assert "0.000 fail" in exact and "1.000 pass" in exact
    assert "1.000 a vs base" in text


def test_export_jsonl_has_every_example_in_order() -> None:
    buf = io.StringIO()
    assert evalexport.write_jsonl(results(), buf) == 2
    first, second = (json.loads(line) for line in buf.getvalue().splitlines())
    assert (first["index"], second["index"]) == (0, 3)
    assert first["input"][-1] == {"role": "user", "content": "0?"} and first["reference"] == "0."
    assert first["answers"]["fine-tuned"]["error"] == "endpoint_error"
    assert first["grades"]["exact"]["fine-tuned"] == {"score": None, "passed": None, "error": "model_error"}
    assert second["grades"]["exact"]["fine-tuned"] == {"score": 1.0, "passed": True}
    assert second["grades"]["judge"]["fine-tuned vs base"]["rationale"] == "closer to the reference"


def test_export_csv_is_one_row_per_example() -> None:
    buf = io.StringIO()
    assert evalexport.write_csv(results(), buf) == 2
    rows = list(csv.DictReader(io.StringIO(buf.getvalue())))
    assert [r["index"] for r in rows] == ["0", "3"]
    assert rows[0]["error:fine-tuned"] == "endpoint_error" and rows[0]["answer:fine-tuned"] == ""
    assert rows[0]["error:exact:fine-tuned"] == "model_error" and rows[0]["score:exact:fine-tuned"] == ""
    assert rows[1]["score:exact:fine-tuned"] == "1.0" and rows[1]["passed:exact:base"] == "false"
    assert rows[1]["label:judge:fine-tuned vs base"] == "a"
    assert json.loads(rows[1]["input"])[-1]["content"] == "3?"


def test_evaluation_record_reads_back() -> None:
    e = epb.Evaluation(
        id="eval-1", state=common_pb2.JOB_STATE_RUNNING, total_examples=8, finished_examples=3, errored_examples=1,
        spec=epb.EvaluationSpec(
            models=[epb.ModelRef(model="tiny-llama", label="base"), epb.ModelRef(model="gpt-4o@x", base_url="http://h")],
            data=epb.EvaluationData(job_id="ftjob-1", limit=8),
            graders=[epb.GraderSpec(type="string_check", name="exact")],
            generation=epb.GenerationConfig(max_tokens=16, seed=3, stop=["\n"])),
        resolved_data=epb.DatasetVersionRef(dataset="doubling", version=2))
    got = dict(evalview.rows(e))
    assert got["state"] == "running" and got["progress"] == "3/8 (1 errored)"
    assert got["models"] == "base (tiny-llama), gpt-4o@x @ http://h"
    assert got["data"] == "validation part of job ftjob-1 (doubling v2), first 8"
    assert got["graders"] == "exact=string_check"
    assert got["generation"] == 'greedy, max tokens 16, seed 3, stop "\\n", concurrency 4'


# ---- the command line without a service -------------------------------------------------------------------------
def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "tunery.cli.main", *args], capture_output=True, text=True,
                          timeout=60, env=env, stdin=subprocess.DEVNULL)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    return proc


def test_bad_options_are_refused_before_any_call() -> None:
    dead = f"127.0.0.1:{free_port()}"
    no_data = cli("eval", "run", "m", "--grader", "latency", "--addr", dead)
    assert no_data.returncode == 2 and "give --dataset (with --version) or --job" in no_data.stderr
    bad = cli("eval", "run", "m", "--job", "ftjob-1", "--grader", "json:{x", "--addr", dead)
    assert bad.returncode == 2 and "not JSON" in bad.stderr
    down = cli("eval", "graders", "--addr", dead)
    assert down.returncode == 1 and f"cannot reach the evaluator service at {dead}" in down.stderr
    # Only the states an evaluation can be in are offered (a job's validating_files and paused are not).
    paused = cli("eval", "list", "--state", "paused", "--addr", dead, env={**os.environ, "COLUMNS": "200"})
    offered = " ".join(paused.stderr.replace("│", " ").split())
    assert paused.returncode == 2 and "'queued', 'running', 'succeeded', 'failed', 'cancelled'" in offered, offered
    assert "validating_files" not in offered
    queued = cli("eval", "list", "--state", "queued", "--state", "cancelled", "--addr", dead)
    assert queued.returncode == 1 and "cannot reach the evaluator service" in queued.stderr
    # `jobs create --eval-model` reads MODEL@BASE_URL as `eval run` does, and names its own option.
    job = ("jobs", "create", "--dataset", "d", "-v", "1", "--model", "m", "--eval-grader", "latency",
           "--addr", dead)
    ftp = cli(*job, "--eval-model", "x@ftp://host/v1")
    assert ftp.returncode == 2 and "--eval-model" in ftp.stderr and "http(s) URL" in ftp.stderr


# ---- end to end: the session's services, a real evaluator and gateway ------------------------------------------
EVAL_ID = re.compile(r"created evaluation (\S+) ")
JOB_ID = re.compile(r"created job (ftjob-[0-9a-f]+)")
OVERLAP = 'overlap=word_overlap:{"pass_threshold": 0.5}'


def summary_models(out: str) -> list[str]:
    """The models of the summary table's overlap rows (mean and interval as 0.000 [0.000, 0.000])."""
    return re.findall(r"^│ overlap\s+│ (\S+)\s+│\s+\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\] │", out, re.MULTILINE)


def run(ev: Evaluation, *args: str | int | Path, code: int = 0, timeout: float = 300, wide: bool = False,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`tunery ARGS` as a user runs it; tables fit 100 columns (`wide`: lines that carry whole ids and paths, as
    `jobs watch` prints them, may be longer)."""
    proc = subprocess.run([sys.executable, "-m", "tunery.cli.main", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env={**ev.cli_env(), **(env or {})}, stdin=subprocess.DEVNULL)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    assert proc.returncode == code, f"tunery {' '.join(map(str, args))} -> {proc.returncode}\n{proc.stdout}\n" \
                                    f"{proc.stderr}"
    assert "\x1b[" not in proc.stdout + proc.stderr, "no colour off a terminal"
    if "--json" not in args and not wide:  # JSON is for scripts
        widest = max((len(line) for line in proc.stdout.splitlines()), default=0)
        assert widest <= 100, f"{widest} columns:\n{proc.stdout}"
    return proc


def test_graders_are_listed(evaluation: Evaluation) -> None:
    out = run(evaluation, "eval", "graders").stdout
    row = next(line for line in out.splitlines() if "word_overlap" in line)
    assert "tunery-test-grader" in row and "yes" in row, "a plugin, and it needs a reference"
    builtin = next(line for line in out.splitlines() if line.startswith("│ string_check"))
    assert "tunery-evaluator" in builtin
    doc = json.loads(run(evaluation, "eval", "graders", "--json").stdout)
    overlap = next(g for g in doc["graders"] if g["type"] == "word_overlap")
    assert "pass_threshold" in overlap["config_schema"]["properties"]


def test_run_show_list_export_and_delete(stack: Stack, evaluation: Evaluation, tmp_path: Path) -> None:
    ds = stack.make_version(n=8)
    res = run(evaluation, "eval", "run", f"base={evaluation.base}", f"again={evaluation.base}", "--dataset", ds,
              "--version", 1, "--limit", 4, "--grader", OVERLAP, "--max-tokens", 4, "--seed", 1, "--log-every", 2)
    m = EVAL_ID.search(res.stdout)
    assert m, res.stdout
    eval_id = m.group(1)
    out = res.stdout
    assert f"watching evaluation {eval_id}" in out
    assert re.findall(r"^(\d)/4 examples", out, re.MULTILINE) == ["2", "4"], "off a terminal: every 2nd example"
    assert f"evaluation {eval_id} succeeded (4/4 examples)" in out
    assert summary_models(out) == ["base", "again"], out
    pair = next(line for line in out.splitlines() if "base vs again" in line or "again vs base" in line)
    assert "0/0/4" in pair, "greedy answers of one model: four ties"

    again = run(evaluation, "eval", "watch", eval_id).stdout  # an ended one: its summary at once
    assert f"evaluation {eval_id} succeeded (4/4 examples)" in again and summary_models(again) == ["base", "again"]
    shown = run(evaluation, "eval", "show", eval_id, "--examples", 2).stdout
    assert f"{ds} v1, first 4" in shown and "overlap=word_overlap" in shown
    assert shown.count("example ") == 2 and "input: 0? (after 1 earlier turns)" in shown and "reference: 0." in shown
    assert eval_id in run(evaluation, "eval", "list", "--dataset", ds).stdout
    assert eval_id not in run(evaluation, "eval", "list", "--dataset", ds, "--state", "failed").stdout

    jsonl, table = tmp_path / "out.jsonl", tmp_path / "out.csv"
    assert "wrote 4 examples" in run(evaluation, "eval", "export", eval_id, "-o", jsonl).stdout
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [r["index"] for r in records] == [0, 1, 2, 3]
    assert {r["reference"] for r in records} == {"0.", "2.", "4.", "6."}
    assert all(set(r["answers"]) == {"base", "again"} and set(r["grades"]["overlap"]) == {"base", "again"}
               for r in records)
    run(evaluation, "eval", "export", eval_id, "--format", "csv", "-o", table)
    with table.open(newline="") as fh:
        rows_csv = list(csv.DictReader(fh))
    assert len(rows_csv) == 4 and {"answer:base", "score:overlap:again", "error:overlap:base"} <= set(rows_csv[0])
    assert [r["answer:base"] for r in rows_csv] == [r["answers"]["base"]["content"] for r in records]

    refused = run(evaluation, "eval", "cancel", eval_id, code=1)
    assert "error:" in refused.stderr and eval_id in refused.stderr
    assert f"deleted evaluation {eval_id}" in run(evaluation, "eval", "delete", eval_id).stdout
    gone = run(evaluation, "eval", "show", eval_id, code=1)
    assert "not found" in gone.stderr


def test_a_model_the_gateway_does_not_serve_names_the_argument(stack: Stack, evaluation: Evaluation) -> None:
    ds = stack.make_version(n=8)
    res = run(evaluation, "eval", "run", "no-such-model", "--dataset", ds, "-v", 1, "--grader", "word_overlap",
              code=1)
    assert "no-such-model" in res.stderr and "option MODELS" in res.stderr


def test_compare_answers_prompts_side_by_side(evaluation: Evaluation, tmp_path: Path) -> None:
    graders = tmp_path / "graders.json"
    graders.write_text(json.dumps([{"type": "word_overlap", "name": "overlap"}]))
    out = run(evaluation, "eval", "compare", f"base={evaluation.base}", f"hot={evaluation.base}", "--prompt", "1?",
              "--prompt", "2?", "--reference", "2.", "--reference", "4.", "--graders-file", graders,
              "--max-tokens", 3, "--seed", 1, "--top-p", 0.9).stdout
    assert out.count("input: ") == 2 and "input: 2?" in out and "reference: 4." in out
    header = next(line for line in out.splitlines() if "base" in line and "hot" in line)
    assert header.index("base") < header.index("hot")
    scored = [line for line in out.splitlines() if line.startswith("│ overlap")]
    assert len(scored) == 2 and all(re.search(r"\d\.\d{3} (pass|fail) .* \d\.\d{3} (pass|fail)", line)
                                    for line in scored), out
    wide = run(evaluation, "eval", "compare", evaluation.base, "--prompt", "1?", "--top-p", 1.5, code=1).stderr
    assert "generation.top_p must be in (0, 1], not 1.5" in wide and "option --top-p" in wide, wide


def test_a_jobs_external_eval_model_takes_its_key_from_the_environment(stack: Stack, evaluation: Evaluation
                                                                       ) -> None:
    """The key of `--eval-model MODEL@BASE_URL` comes from TUNERY_EVAL_API_KEY (as for `eval run`), is kept with
    the job for its evaluation, and is never shown."""
    ds = stack.make_version(n=16)
    url, secret = f"http://127.0.0.1:{free_port()}/v1", f"sk-external-{free_port()}-never-shown"
    common = ("jobs", "create", "--dataset", ds, "--version", 1, "--backend", "echo", "--model", stack.tiny_model,
              "--validation-split", 0.25, "--eval-grader", "latency", "--eval-model", f"ext=gpt-x@{url}", "--json")
    jobs = []
    try:
        for env in ({"TUNERY_EVAL_API_KEY": secret}, {}):
            res = run(evaluation, *common, env=env)
            jobs.append(json.loads(res.stdout)["job"]["id"])
            assert secret not in res.stdout + res.stderr
            (extra,) = stack.job(jobs[-1]).spec.evaluation.extra_models
            assert (extra.label, extra.model, extra.base_url) == ("ext", "gpt-x", url)
            assert extra.api_key_set == bool(env) and not extra.api_key
        shown = run(evaluation, "jobs", "show", jobs[0], "--json").stdout
        assert secret not in shown and json.loads(shown)["spec"]["evaluation"]["extra_models"][0]["api_key_set"]
        assert "TUNERY_EVAL_API_KEY" in run(evaluation, "jobs", "create", "--help", wide=True).stdout
    finally:  # nothing to train: the session's workers (if any run) need not take them
        for job_id in jobs:
            with contextlib.suppress(grpc.RpcError):
                stack.trainer.CancelJob(tpb.CancelJobRequest(job_id=job_id))


def test_a_job_created_with_eval_graders_is_evaluated_when_it_succeeds(stack: Stack, workers: Workers,
                                                                       evaluation: Evaluation) -> None:
    ds = stack.make_version(n=24)
    common = ("jobs", "create", "--dataset", ds, "--version", 1, "--backend", "peft", "--model", stack.tiny_model,
              "--validation-split", 0.25, "--epochs", 1, "--batch-size", 6)
    bad = run(evaluation, *common, "--eval-grader", "nope", code=1)
    assert "unknown grader 'nope'" in bad.stderr and "option --eval-grader" in bad.stderr
    res = run(evaluation, *common, "--eval-grader", OVERLAP, "--eval-max-tokens", 4, "--watch", wide=True)
    m = JOB_ID.search(res.stdout)
    assert m, res.stdout
    job_id = m.group(1)
    out = res.stdout
    assert f"job {job_id} succeeded" in out
    created = re.search(r"evaluation (\S+) created", out)
    assert created, out
    assert f"evaluation {created.group(1)} succeeded" in out, "the watch follows the evaluation to its end"
    assert summary_models(out) == ["base", "fine-tuned"], out
    assert created.group(1) in run(evaluation, "eval", "list", "--job", job_id).stdout
    listed = run(evaluation, "jobs", "list", "--dataset", ds).stdout.splitlines()
    assert any(re.search(r"┃ eval +┃", line) for line in listed), listed  # the column, as a job here asked for one
    assert sum(line.count("succeeded") for line in listed) == 2, listed  # the job's state and its evaluation's
    shown = run(evaluation, "jobs", "show", job_id, wide=True).stdout
    assert f"base vs fine-tuned with overlap: {created.group(1)} succeeded" in shown
    assert "fine-tuned vs base" in shown or "base vs fine-tuned" in shown.split("a against b")[-1]


def test_on_a_terminal_run_draws_a_progress_bar(stack: Stack, evaluation: Evaluation) -> None:
    """Under a pseudo-terminal (util-linux `script`): a live bar instead of progress lines, then the summary."""
    ds = stack.make_version(n=8)
    cmd = shlex.join([sys.executable, "-m", "tunery.cli.main", "eval", "run", f"base={evaluation.base}",
                      "--dataset", ds, "-v", "1", "--limit", "2", "--grader", OVERLAP, "--max-tokens", "2"])
    env = {**evaluation.cli_env(), "TERM": "xterm"}
    env.pop("NO_COLOR")
    proc = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, text=True, timeout=300,
                          env=env, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "Traceback" not in out
    assert "━" in out and "2/2" in out, "the bar with its count"
    assert "watching evaluation" not in out and "examples\r\n" not in out, "no progress lines on a terminal"
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out)
    assert "succeeded (2/2 examples)" in plain and "summary" in plain
