"""`tunery eval ...`: evaluations on the evaluator service over gRPC. `run` creates one and (by default) follows it
to its summary (evalwatch), `show` prints the summary, the pairwise comparison and examples side by side (evalview),
`export` writes every example (evalexport), `compare` answers prompts across models without storing anything.

Values are sent as typed; the evaluator checks the spec and names the field at fault, and the error line adds the
option that sets it.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from tunery.cli import evalexport, evalspec, output, rpc
from tunery.cli.common import JsonOpt, kv, more_hint, page_request, paged
from tunery.cli.evalview import (
    data_text,
    example_table,
    grader_names,
    model_errors_line,
    models_text,
    pairs_table,
    progress_text,
    rows,
    summary_table,
)
from tunery.cli.evalwatch import follow
from tunery.cli.jobview import styled
from tunery.cli.output import console, info, print_json, say, to_dict, when
from tunery.common.v1 import common_pb2
from tunery.errors import TuneryError
from tunery.evaluator.v1 import evaluator_pb2 as epb
from tunery.evaluator.v1 import evaluator_pb2_grpc

app = typer.Typer(help="Evaluations: base against fine-tuned models, side by side, scored by graders.",
                  no_args_is_help=True)

AddrOpt = Annotated[str | None, typer.Option("--addr", envvar="TUNERY_EVALUATOR_ADDR", show_envvar=True,
                                             help="Evaluator service host:port (default: up.json, else "
                                                  "127.0.0.1:50053)")]
EvalArg = Annotated[str, typer.Argument(metavar="EVALUATION", help="Evaluation id.")]
GraderOpt = Annotated[list[str] | None, typer.Option("--grader", "-g", metavar="[NAME=]TYPE[:JSON]",
                                                     help=evalspec.GRADER_HELP)]
GradersFileOpt = Annotated[Path | None, typer.Option("--graders-file", help=evalspec.GRADERS_FILE_HELP)]
TemperatureOpt = Annotated[float | None, typer.Option(help="Sampling temperature (default 0: greedy).")]
MaxTokensOpt = Annotated[int, typer.Option(min=0, help="Longest answer in tokens (0: 256).")]
SeedOpt = Annotated[int | None, typer.Option(help="Sampling seed (reproducible answers).")]
StopOpt = Annotated[list[str] | None, typer.Option("--stop", help="Stop sequence (repeatable).")]
ConcurrencyOpt = Annotated[int, typer.Option(min=0, help="Requests in flight per model (0: 4).")]
ModelsArg = Annotated[list[str], typer.Argument(metavar="MODELS...", help="Models to evaluate: a name the gateway "
                                                "serves (base or ft:...), LABEL=MODEL for a short name in tables, "
                                                "MODEL@BASE_URL for a model of an OpenAI-compatible endpoint.")]
ApiKeyOpt = Annotated[str, typer.Option(envvar=evalspec.API_KEY_ENV, show_envvar=True, help=evalspec.API_KEY_HELP)]
TopPOpt = Annotated[float | None, typer.Option(help="Nucleus sampling: the smallest set of tokens whose "
                                               "probabilities reach P, in (0, 1].")]

# Spec fields (as the evaluator names them) -> the option that sets them.
_FIELD = re.compile(r"^(?:spec\.)?(?P<head>[a-z_]+)(?:\[\d+\])?(?:\.(?P<tail>[a-z_.]+))?")
_OPTIONS = {"models": "MODELS", "graders": "--grader", "data": "--dataset/--job", "data.limit": "--limit",
            "data.dataset_version": "--dataset/--version", "data.dataset_version.version": "--version",
            "data.dataset_version.dataset": "--dataset", "data.job_id": "--job", "generation.temperature":
            "--temperature", "generation.max_tokens": "--max-tokens", "generation.seed": "--seed",
            "generation.stop": "--stop", "generation.concurrency": "--concurrency", "generation.top_p": "--top-p",
            "conversations": "--prompt"}


def _with_option(err: TuneryError) -> TuneryError:
    if not err.field or err.field == "evaluation_id":
        return err
    m = _FIELD.match(err.field)
    opt = ""
    if m:
        head, tail = m.group("head"), m.group("tail") or ""
        opt = _OPTIONS.get(f"{head}.{tail}" if tail else head, "") or _OPTIONS.get(head, "")
    return dataclasses.replace(err, message=f"{err.message} (field {err.field}{f', option {opt}' if opt else ''})")


def connect(addr: str | None) -> AbstractContextManager[evaluator_pb2_grpc.EvaluatorServiceStub]:
    return rpc.connect("evaluator", evaluator_pb2_grpc.EvaluatorServiceStub, addr, refine=_with_option)


# ---- run ----------------------------------------------------------------------------------------------------------
@app.command()
def run(models: ModelsArg,
        dataset: Annotated[str, typer.Option("--dataset", "-d", help="Dataset (name or id) to evaluate on.")] = "",
        version: Annotated[int, typer.Option("--version", "-v", help="Its frozen version.")] = 0,
        job: Annotated[str, typer.Option("--job", help="Evaluate on the validation part of this training job.")
                       ] = "",
        limit: Annotated[int, typer.Option(min=0, help="Only the first N examples (0: all).")] = 0,
        grader: GraderOpt = None, graders_file: GradersFileOpt = None,
        temperature: TemperatureOpt = None, max_tokens: MaxTokensOpt = 0, seed: SeedOpt = None,
        stop: StopOpt = None, concurrency: ConcurrencyOpt = 0,
        top_p: TopPOpt = None,
        name: Annotated[str, typer.Option("--name", help="Display name.")] = "",
        bootstrap_seed: Annotated[int, typer.Option(help="Seed of the bootstrap intervals.")] = 0,
        idempotency_key: Annotated[str, typer.Option(help="A retry with the same key returns the same one.")] = "",
        api_key: ApiKeyOpt = "",
        watch: Annotated[bool, typer.Option("--watch/--no-watch", help="Follow it to its summary (default).")
                         ] = True,
        log_every: Annotated[int, typer.Option(min=1, help="Off a terminal: a line every N examples.")] = 10,
        addr: AddrOpt = None, as_json: JsonOpt = False) -> None:
    """Evaluate models on a frozen dataset version (or a job's validation part) with graders."""
    if bool(dataset) == bool(job):
        raise typer.BadParameter("give --dataset (with --version) or --job", param_hint="--dataset/--job")
    if job and version:
        raise typer.BadParameter("--version goes with --dataset; --job brings its own data", param_hint="--version")
    data = epb.EvaluationData(job_id=job, limit=limit) if job else epb.EvaluationData(
        dataset_version=epb.DatasetVersionRef(dataset=dataset, version=version), limit=limit)
    spec = epb.EvaluationSpec(
        models=[evalspec.model_ref(m, api_key) for m in models], data=data,
        graders=evalspec.graders(grader or [], graders_file, "--grader", "--graders-file"),
        generation=evalspec.generation(temperature, max_tokens, seed, stop or [], concurrency, top_p),
        display_name=name, seed=bootstrap_seed, idempotency_key=idempotency_key)
    with connect(addr) as stub:
        r = stub.CreateEvaluation(epb.CreateEvaluationRequest(spec=spec))
        if as_json:
            print_json(r)
            return
        e = r.evaluation
        if r.existing:
            info(f"an evaluation with idempotency key {escape(idempotency_key)!r} exists already: this is that one")
        say(f"{'created ' if not r.existing else ''}evaluation [bold]{e.id}[/] ({styled(e.state)})")
        console.print(kv([("models", models_text(e.spec)), ("data", data_text(e.spec.data))]))
        if not watch:
            info(f"follow it with `tunery eval watch {e.id}`")
            return
        code = follow(stub, e.id, log_every)
    raise typer.Exit(code)


@app.command()
def watch(evaluation_id: EvalArg,
          log_every: Annotated[int, typer.Option(min=1, help="Off a terminal: a line every N examples.")] = 10,
          addr: AddrOpt = None) -> None:
    """Follow an evaluation to its end, then print its summary; exit code 0 only if it succeeded."""
    with connect(addr) as stub:
        code = follow(stub, evaluation_id, log_every)
    raise typer.Exit(code)


# ---- read ---------------------------------------------------------------------------------------------------------
@app.command("list")
def list_evaluations(
        state: Annotated[list[evalspec.EvalState] | None, typer.Option(help="Only in this state (repeatable).")] = None,
        model: Annotated[str, typer.Option("--model", "-m", help="Only those with this model.")] = "",
        dataset: Annotated[str, typer.Option("--dataset", "-d", help="Only those on this dataset.")] = "",
        job: Annotated[str, typer.Option("--job", help="Only those made for this training job.")] = "",
        page_size: Annotated[int, typer.Option(min=0, max=1000)] = 50,
        page_token: Annotated[str, typer.Option()] = "",
        every: Annotated[bool, typer.Option("--all", help="Follow page tokens to the end.")] = False,
        addr: AddrOpt = None, as_json: JsonOpt = False) -> None:
    """List evaluations, newest first."""
    states = [common_pb2.JobState.Value(f"JOB_STATE_{s.value.upper()}") for s in state or []]
    with connect(addr) as stub:
        def fetch(token: str) -> tuple[list[Any], common_pb2.PageResponse]:
            r = stub.ListEvaluations(epb.ListEvaluationsRequest(page=page_request(page_size, token), states=states,  # type: ignore[arg-type]
                                                                model=model, dataset=dataset, job_id=job))
            return list(r.evaluations), r.page

        items, page = paged(fetch, page_token, every)
    if as_json:
        print_json({"evaluations": [to_dict(e) for e in items], "page": to_dict(page)})
        return
    if not items:
        info("no evaluations match" if state or model or dataset or job
             else "no evaluations yet: `tunery eval run MODEL... --dataset D -v N --grader TYPE`")
    else:
        t = output.table("id", "state", "progress", "models", "data", "created")
        t.columns[0].no_wrap = True
        for e in items:
            t.add_row(e.id, styled(e.state), progress_text(e), escape(", ".join(m.label or m.model
                                                                                for m in e.spec.models)),
                      escape(data_text(e.spec.data)), when(e.create_time))
        console.print(t)
    more_hint(len(items), page)


def _results(stub: evaluator_pb2_grpc.EvaluatorServiceStub, evaluation_id: str, limit: int = 0
             ) -> list[epb.ExampleResult]:
    """Stored results in example order (the first `limit` by example index when limit > 0)."""
    out = [item.result for item in stub.StreamEvaluationResults(
        epb.StreamEvaluationResultsRequest(evaluation_id=evaluation_id, no_follow=True)) if item.HasField("result")]
    out.sort(key=lambda r: r.index)
    return out[:limit] if limit else out


def _columns(e: epb.Evaluation, results: list[epb.ExampleResult]) -> list[str]:
    names: list[str] = []
    for r in results:
        names += [a.model for a in r.answers if a.model not in names]
    return names or [m.label or m.model for m in e.spec.models]


@app.command()
def show(evaluation_id: EvalArg,
         examples: Annotated[int, typer.Option("--examples", "-n", min=0, help="Also N examples side by side.")] = 0,
         addr: AddrOpt = None, as_json: JsonOpt = False) -> None:
    """One evaluation: spec, progress, summary (per grader and model: mean [95% CI], pass rate, errors), pairs
    of models (wins/losses/ties, mean difference, CI, p-value) and, with --examples, answers side by side."""
    with connect(addr) as stub:
        e = stub.GetEvaluation(epb.GetEvaluationRequest(evaluation_id=evaluation_id)).evaluation
        results = _results(stub, evaluation_id, examples) if examples else []
    if as_json:
        print_json({"evaluation": to_dict(e), "examples": [to_dict(r) for r in results]} if examples else e)
        return
    console.print(kv(rows(e)))
    for t in (summary_table(e.summary), pairs_table(e.summary)):
        if t is not None:
            console.print(t)
    if errs := model_errors_line(e.summary):
        say(f"model errors: {errs}")
    if not e.summary.graders:
        info("no summary yet" + (f" ({progress_text(e)} examples done)" if e.total_examples else ""))
    models = _columns(e, results)
    graders = grader_names(e.spec, results)
    for r in results:
        console.print(example_table(r, models, graders))


@app.command()
def export(evaluation_id: EvalArg,
           fmt: Annotated[str, typer.Option("--format", "-f", help="jsonl or csv.")] = "jsonl",
           out: Annotated[Path | None, typer.Option("--output", "-o", help="File to write (default: stdout).")
                          ] = None,
           addr: AddrOpt = None) -> None:
    """Every example: input, reference, each model's answer, each grader's score and every error."""
    if fmt not in ("jsonl", "csv"):
        raise typer.BadParameter(f"unknown format {fmt!r}; valid: jsonl, csv", param_hint="--format")
    with connect(addr) as stub:
        results = _results(stub, evaluation_id)
    write = evalexport.write_jsonl if fmt == "jsonl" else evalexport.write_csv
    if out is None:
        with output.stdout_pipe():
            n = write(results, sys.stdout)
            sys.stdout.flush()
    else:
        tmp = out.with_name(f".{out.name}.partial")
        try:
            with tmp.open("w", encoding="utf-8", newline="") as fh:
                n = write(results, fh)
            tmp.replace(out)  # a failed export leaves no half-written file behind
        except OSError as err:
            tmp.unlink(missing_ok=True)
            output.fail(f"cannot write {out}: {err.strerror}")
        say(f"wrote {n} examples to {escape(str(out))}")


# ---- compare, graders ---------------------------------------------------------------------------------------------
def _conversations(prompts: list[str], file: Path | None) -> list[epb.Conversation]:
    convs = [epb.Conversation(messages=[epb.ChatMessage(role="user", content=p)]) for p in prompts]
    if file is None:
        return convs
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise typer.BadParameter(f"cannot read {file}: {err.strerror}", param_hint="--file") from None
    for no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except ValueError as err:
            raise typer.BadParameter(f"{file}:{no}: not JSON: {err}", param_hint="--file") from None
        if isinstance(doc, str):
            doc = {"messages": [{"role": "user", "content": doc}]}
        msgs = doc.get("messages") if isinstance(doc, dict) else None
        if not isinstance(msgs, list) or not all(isinstance(m, dict) and "role" in m for m in msgs):
            raise typer.BadParameter(f"{file}:{no}: expected a string or {{\"messages\": [{{\"role\", \"content\"}}]}}",
                                     param_hint="--file")
        convs.append(epb.Conversation(messages=[epb.ChatMessage(role=str(m["role"]), content=str(m.get("content", "")))
                                                for m in msgs]))
    return convs


@app.command()
def compare(models: ModelsArg,
            prompt: Annotated[list[str] | None, typer.Option("--prompt", "-p", help="A prompt (repeatable).")] = None,
            file: Annotated[Path | None, typer.Option("--file", help="Prompts from JSONL: strings or "
                                                      "{\"messages\": [...]} conversations.")] = None,
            reference: Annotated[list[str] | None, typer.Option("--reference", help="Reference answer, one per "
                                                                "prompt in order (for graders that need one).")
                                 ] = None,
            grader: GraderOpt = None, graders_file: GradersFileOpt = None,
            temperature: TemperatureOpt = None, max_tokens: MaxTokensOpt = 0, seed: SeedOpt = None,
            stop: StopOpt = None, concurrency: ConcurrencyOpt = 0, top_p: TopPOpt = None, api_key: ApiKeyOpt = "",
            addr: AddrOpt = None, as_json: JsonOpt = False) -> None:
    """Answer prompts with every model, side by side (nothing is stored)."""
    convs = _conversations(prompt or [], file)
    if not convs:
        raise typer.BadParameter("give at least one --prompt or a --file", param_hint="--prompt")
    request = epb.CompareRequest(
        conversations=convs, models=[evalspec.model_ref(m, api_key) for m in models],
        generation=evalspec.generation(temperature, max_tokens, seed, stop or [], concurrency, top_p),
        graders=evalspec.graders(grader or [], graders_file, "--grader", "--graders-file"),
        references=reference or [])
    with connect(addr) as stub:
        r = stub.Compare(request)
    if as_json:
        print_json(r)
        return
    results = list(r.results)
    cols: list[str] = []
    for res in results:
        cols += [a.model for a in res.answers if a.model not in cols]
    graders = grader_names(epb.EvaluationSpec(graders=request.graders), results)
    for res in results:
        console.print(example_table(res, cols, graders if request.graders else []))


@app.command()
def graders(addr: AddrOpt = None, as_json: JsonOpt = False) -> None:
    """Installed graders (built-ins and plugins); `--json` shows each one's config schema."""
    with connect(addr) as stub:
        items = list(stub.ListGraders(epb.ListGradersRequest()).graders)
    if as_json:
        print_json({"graders": [to_dict(g) for g in items]})
        return
    t = output.table("type", "kind", "needs reference", "better", "from", "description")
    t.columns[0].no_wrap = True
    for g in items:
        t.add_row(escape(g.type), "pairwise" if g.pairwise else "per answer", "yes" if g.needs_reference else "",
                  "higher" if g.higher_is_better else "lower", escape(g.package), escape(g.description))
    console.print(t)


# ---- control ------------------------------------------------------------------------------------------------------
@app.command()
def cancel(evaluation_id: EvalArg, addr: AddrOpt = None) -> None:
    """Cancel a queued or running evaluation; the results so far are kept."""
    with connect(addr) as stub:
        e = stub.CancelEvaluation(epb.CancelEvaluationRequest(evaluation_id=evaluation_id)).evaluation
    say(f"cancelled evaluation {e.id} ({styled(e.state)})")


@app.command()
def delete(evaluation_id: EvalArg, addr: AddrOpt = None) -> None:
    """Delete a finished evaluation and its results."""
    with connect(addr) as stub:
        stub.DeleteEvaluation(epb.DeleteEvaluationRequest(evaluation_id=evaluation_id))
    say(f"deleted evaluation {evaluation_id}")
