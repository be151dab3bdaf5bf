"""`tunery jobs ...`: fine-tuning jobs on the trainer service over gRPC; `watch` follows one job to its end (the live
view is `jobwatch`, how a job reads is `jobview`).

Every value the user gives is sent as typed; the server validates the spec and names the field at fault, and the
error line adds the option to fix, so the CLI never second-guesses the server's rules.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from contextlib import AbstractContextManager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from google.protobuf import struct_pb2
from rich.markup import escape

from tunery.cli import evalspec, output, rpc
from tunery.cli.common import JsonOpt, kv, more_hint, page_request, paged
from tunery.cli.evalview import pairs_table, summary_table
from tunery.cli.jobview import data_ref, evaluation_cell, hyperparameters, job_rows, progress_text, styled
from tunery.cli.jobwatch import follow
from tunery.cli.output import console, info, print_json, say, to_dict, when
from tunery.common.v1 import common_pb2
from tunery.errors import TuneryError
from tunery.evaluator.v1 import evaluator_pb2 as epb
from tunery.trainer.v1 import trainer_pb2 as pb
from tunery.trainer.v1 import trainer_pb2_grpc

app = typer.Typer(help="Fine-tuning jobs: create, list, follow, cancel, pause, resume.", no_args_is_help=True)

AddrOpt = Annotated[str | None, typer.Option("--addr", envvar="TUNERY_TRAINER_ADDR", show_envvar=True,
                                             help="Trainer service host:port (default: up.json, else 127.0.0.1:50052)")]
JobArg = Annotated[str, typer.Argument(metavar="JOB", help="Job id.")]


class MethodChoice(StrEnum):
    sft = "sft"
    dpo = "dpo"


class StateChoice(StrEnum):
    validating_files = "validating_files"
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"
    paused = "paused"


# ---- connection and errors -------------------------------------------------------------------------------------

# Spec fields (as the server names them) -> the option that sets them.
_OPTIONS = {
    "base_model": "--model", "backend": "--backend", "method": "--method", "suffix": "--suffix",
    "max_seq_length": "--max-seq-length", "validation_split": "--validation-split", "backend_config": "--config",
    "training_data": "--dataset", "training_data.dataset": "--dataset", "training_data.version": "--version",
    "validation_data": "--validation-dataset", "validation_data.dataset": "--validation-dataset",
    "validation_data.version": "--validation-version", "hyperparameters.n_epochs": "--epochs",
    "hyperparameters.batch_size": "--batch-size", "hyperparameters.learning_rate": "--learning-rate",
    "hyperparameters.learning_rate_multiplier": "--lr-multiplier",
    "hyperparameters.gradient_accumulation_steps": "--grad-accum", "hyperparameters.warmup_ratio": "--warmup-ratio",
    "hyperparameters.weight_decay": "--weight-decay", "lora.rank": "--lora-rank", "lora.alpha": "--lora-alpha",
    "lora.dropout": "--lora-dropout", "checkpoint_every_steps": "--checkpoint-every",
    "eval_every_steps": "--eval-every",
}

_EVAL_OPTIONS = {"graders": "--eval-grader", "data": "--eval-dataset/--eval-version/--eval-limit",
                 "generation": "--eval-max-tokens/--eval-temperature/--eval-seed", "extra_models": "--eval-model"}


def _option_of(field: str) -> str:
    if field.startswith("evaluation."):
        return _EVAL_OPTIONS.get(field.split(".")[1].split("[")[0], "--eval-grader")
    if field.startswith("backend_config."):
        return f"--config {field.removeprefix('backend_config.')}=..."
    if field.startswith("lora.target_modules"):
        return "--target-module"
    return _OPTIONS.get(field, "")


def _with_field(err: TuneryError) -> TuneryError:
    """The server names the spec field; the user typed an option: name both, so the fix is obvious either way."""
    if not err.field or err.field == "job_id":
        return err
    opt = _option_of(err.field)
    return dataclasses.replace(err, message=f"{err.message} (field {err.field}{f', option {opt}' if opt else ''})")


def connect(addr: str | None) -> AbstractContextManager[trainer_pb2_grpc.TrainerServiceStub]:
    """A trainer service stub; any failure inside ends the command with one clear line and exit code 1."""
    return rpc.connect("trainer", trainer_pb2_grpc.TrainerServiceStub, addr, refine=_with_field)


# ---- create ----------------------------------------------------------------------------------------------------


def _auto_number(value: str | None, kind: type[int] | type[float], option: str) -> int | float | None:
    """`auto` (or nothing) leaves the field unset, which the server reads as "choose from the dataset size"."""
    if value is None or value.strip().lower() == "auto":
        return None
    try:
        return kind(value)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise typer.BadParameter(f"{value!r} is not {what} or 'auto'", param_hint=option) from None


def _backend_config(pairs: Sequence[str]) -> struct_pb2.Struct:
    """KEY=VALUE pairs; a value that parses as JSON keeps its type (3, 0.5, true, [..]), anything else is a string."""
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--config")
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        values[key.strip()] = value
    cfg = struct_pb2.Struct()
    cfg.update(values)
    return cfg


@app.command()
def create(
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Training dataset (name or id).")],
    version: Annotated[int, typer.Option("--version", "-v", help="Frozen version of the training dataset.")],
    validation_dataset: Annotated[str, typer.Option(help="Validation dataset (name or id).")] = "",
    validation_version: Annotated[int, typer.Option(help="Frozen version of --validation-dataset.")] = 0,
    validation_split: Annotated[float, typer.Option(help="Hold out this fraction of the training data instead.")
                                ] = 0.0,
    model: Annotated[str, typer.Option("--model", "-m", help="Base model: catalog name (`tunery jobs models`), "
                                       "local transformers folder or hub id (default: the catalog's default).")] = "",
    backend: Annotated[str, typer.Option(help="Training backend (`tunery jobs backends`); default peft.")] = "",
    config: Annotated[list[str] | None, typer.Option("--config", "-c", metavar="KEY=VALUE",
                                                     help="Backend setting (repeatable); VALUE is JSON or a string.")
                      ] = None,
    epochs: Annotated[str, typer.Option(metavar="N|auto", help="Passes over the training data.")] = "auto",
    batch_size: Annotated[str, typer.Option(metavar="N|auto", help="Examples per optimizer step.")] = "auto",
    learning_rate: Annotated[str, typer.Option(metavar="X|auto", help="Peak learning rate (LoRA: 1e-5 to 1e-3).")
                             ] = "auto",
    lr_multiplier: Annotated[float | None, typer.Option(help="Scales the automatic learning rate.")] = None,
    grad_accum: Annotated[int | None, typer.Option(help="Gradient accumulation steps (default 1).")] = None,
    warmup_ratio: Annotated[float | None, typer.Option()] = None,
    weight_decay: Annotated[float | None, typer.Option()] = None,
    lora_rank: Annotated[int | None, typer.Option(help="Default 16.")] = None,
    lora_alpha: Annotated[int | None, typer.Option(help="Default 2 x rank.")] = None,
    lora_dropout: Annotated[float | None, typer.Option()] = None,
    target_module: Annotated[list[str] | None, typer.Option(
        help="LoRA target module (repeatable); default every attention and MLP projection.")] = None,
    max_seq_length: Annotated[int, typer.Option(help="0: min(2048, the model's context).")] = 0,
    seed: Annotated[int, typer.Option()] = 0,
    suffix: Annotated[str, typer.Option(help="Part of the model name ft:<base>:<suffix>:<job>; [a-z0-9-], <= 40.")
                      ] = "",
    checkpoint_every: Annotated[int, typer.Option(help="Checkpoint every N steps (0: at epoch ends only).")] = 0,
    eval_every: Annotated[int, typer.Option(help="Validate every N steps (0: at epoch ends only).")] = 0,
    idempotency_key: Annotated[str, typer.Option(help="A retry with the same key returns the same job.")] = "",
    method: Annotated[MethodChoice, typer.Option(help="sft, or dpo on preference data.")] = MethodChoice.sft,
    eval_grader: Annotated[list[str] | None, typer.Option(
        "--eval-grader", metavar="[NAME=]TYPE[:JSON]", help="When the job succeeds, evaluate base against fine-tuned "
        "on its validation part with this grader (repeatable; `tunery eval graders`).")] = None,
    eval_graders_file: Annotated[Path | None, typer.Option(help=evalspec.GRADERS_FILE_HELP)] = None,
    eval_dataset: Annotated[str, typer.Option(help="Evaluate on this dataset instead of the validation part.")] = "",
    eval_version: Annotated[int, typer.Option(help="Frozen version of --eval-dataset.")] = 0,
    eval_limit: Annotated[int, typer.Option(min=0, help="Evaluate the first N examples only (0: all).")] = 0,
    eval_max_tokens: Annotated[int, typer.Option(min=0, help="Longest evaluation answer (0: 256).")] = 0,
    eval_temperature: Annotated[float | None, typer.Option(help="Evaluation sampling temperature (0: greedy).")
                                ] = None,
    eval_seed: Annotated[int | None, typer.Option(help="Evaluation sampling seed.")] = None,
    eval_model: Annotated[list[str] | None, typer.Option(
        metavar="MODEL", help="A further model to evaluate beside base and fine-tuned (repeatable); LABEL=MODEL "
        "or MODEL@BASE_URL.")] = None,
    eval_api_key: Annotated[str, typer.Option(envvar=evalspec.API_KEY_ENV, show_envvar=True, help=
                            f"With --eval-model MODEL@BASE_URL: {evalspec.API_KEY_HELP}")] = "",
    eval_skip_base: Annotated[bool, typer.Option(help="Evaluate the fine-tuned model without its base.")] = False,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Then follow the job until it ends.")] = False,
    log_every: Annotated[int, typer.Option(min=1, help="With --watch off a terminal: a step line every N steps.")
                         ] = 10,
    addr: AddrOpt = None, as_json: JsonOpt = False,
) -> None:
    """Queue a fine-tuning job on a frozen dataset version; unset or `auto` hyperparameters are chosen for you."""
    if validation_version and not validation_dataset:
        raise typer.BadParameter("give --validation-dataset too", param_hint="--validation-version")
    if as_json and watch:
        raise typer.BadParameter("--json prints the created job; watch it with `tunery jobs watch`",
                                 param_hint="--watch")
    h = pb.Hyperparameters()
    for name, raw, kind, option in (("n_epochs", epochs, int, "--epochs"), ("batch_size", batch_size, int,
                                    "--batch-size"), ("learning_rate", learning_rate, float, "--learning-rate")):
        if (value := _auto_number(raw, kind, option)) is not None:
            setattr(h, name, value)
    for name, opt in (("learning_rate_multiplier", lr_multiplier), ("gradient_accumulation_steps", grad_accum),
                      ("warmup_ratio", warmup_ratio), ("weight_decay", weight_decay)):
        if opt is not None:
            setattr(h, name, opt)
    lora = pb.LoraConfig(target_modules=target_module or [])
    for name, opt in (("rank", lora_rank), ("alpha", lora_alpha), ("dropout", lora_dropout)):
        if opt is not None:
            setattr(lora, name, opt)
    spec = pb.JobSpec(
        base_model=model, training_data=pb.DatasetRef(dataset=dataset, version=version),
        validation_split=validation_split, method=pb.METHOD_DPO if method is MethodChoice.dpo else pb.METHOD_SFT,
        hyperparameters=h, lora=lora, max_seq_length=max_seq_length, seed=seed, suffix=suffix, backend=backend,
        backend_config=_backend_config(config or []), checkpoint_every_steps=checkpoint_every,
        eval_every_steps=eval_every, idempotency_key=idempotency_key)
    if validation_dataset:
        spec.validation_data.CopyFrom(pb.DatasetRef(dataset=validation_dataset, version=validation_version))
    graders = evalspec.graders(eval_grader or [], eval_graders_file, "--eval-grader", "--eval-graders-file")
    if graders:
        spec.evaluation.CopyFrom(pb.JobEvaluationSpec(
            graders=graders, generation=evalspec.generation(eval_temperature, eval_max_tokens, eval_seed, [], 0),
            extra_models=[evalspec.model_ref(m, eval_api_key, "--eval-model") for m in eval_model or []],
            skip_base=eval_skip_base))
        if eval_dataset or eval_limit:
            data = spec.evaluation.data
            data.limit = eval_limit
            if eval_dataset:
                data.dataset_version.CopyFrom(epb.DatasetVersionRef(dataset=eval_dataset, version=eval_version))
    elif eval_dataset or eval_limit or eval_model or eval_skip_base:
        raise typer.BadParameter("the evaluation needs a grader", param_hint="--eval-grader")
    with connect(addr) as stub:
        r = stub.CreateJob(pb.CreateJobRequest(spec=spec))
        if as_json:
            print_json(r)
            return
        job = r.job
        if r.existing:
            info(f"a job with idempotency key {escape(idempotency_key)!r} exists already: this is that job")
        say(f"created job [bold]{job.id}[/] ({styled(job.state)})" if not r.existing
            else f"job [bold]{job.id}[/] ({styled(job.state)})")
        console.print(kv([("fine-tuned model", job.fine_tuned_model), ("base model", job.spec.base_model),
                           ("backend", job.spec.backend), ("hyperparameters", hyperparameters(job))]))
        if not watch:
            info(f"follow it with `tunery jobs watch {job.id}`")
            return
        code = follow(stub, job.id, 0, log_every)
    raise typer.Exit(code)


# ---- read ------------------------------------------------------------------------------------------------------


@app.command("list")
def list_jobs(state: Annotated[StateChoice | None, typer.Option(help="Only jobs in this state.")] = None,
              model: Annotated[str, typer.Option("--model", "-m", help="Only jobs on this base model.")] = "",
              dataset: Annotated[str, typer.Option("--dataset", "-d", help="Only jobs training on this dataset.")] = "",
              page_size: Annotated[int, typer.Option(min=0, max=1000)] = 50,
              page_token: Annotated[str, typer.Option()] = "",
              every: Annotated[bool, typer.Option("--all", help="Follow page tokens to the end.")] = False,
              addr: AddrOpt = None, as_json: JsonOpt = False) -> None:
    """List jobs, newest first."""
    wanted = common_pb2.JobState.Value(f"JOB_STATE_{state.value.upper()}") if state else 0
    with connect(addr) as stub:
        def fetch(token: str) -> tuple[list[Any], common_pb2.PageResponse]:
            r = stub.ListJobs(pb.ListJobsRequest(page=page_request(page_size, token), state=wanted,  # type: ignore[arg-type]
                                                 base_model=model, dataset=dataset))
            return list(r.jobs), r.page

        items, page = paged(fetch, page_token, every)
    if as_json:
        print_json({"jobs": [to_dict(j) for j in items], "page": to_dict(page)})
        return
    evaluated = any(j.spec.HasField("evaluation") for j in items)  # the column only when a job asked for one
    t = output.table("id", "state", "progress", *(["eval"] if evaluated else []), "base model", "training data",
                     "fine-tuned model", "created")
    for j in items:
        t.add_row(j.id, styled(j.state), progress_text(j), *([evaluation_cell(j)] if evaluated else []),
                  escape(j.spec.base_model), escape(data_ref(j.spec.training_data)), escape(j.fine_tuned_model),
                  when(j.create_time))
    if items:
        console.print(t)
    else:
        info("no jobs match" if state or model or dataset else "no jobs yet: `tunery jobs create --dataset D -v N`")
    more_hint(len(items), page)


@app.command()
def show(job_id: JobArg, addr: AddrOpt = None, as_json: JsonOpt = False) -> None:
    """Show one job: spec, resolved hyperparameters, progress, metrics, adapter or error."""
    with connect(addr) as stub:
        job = stub.GetJob(pb.GetJobRequest(job_id=job_id)).job
    if as_json:
        print_json(job)
        return
    console.print(kv(job_rows(job)))
    if job.evaluation.HasField("summary"):
        for t in (summary_table(job.evaluation.summary), pairs_table(job.evaluation.summary)):
            if t is not None:
                console.print(t)
        info(f"examples side by side: `tunery eval show {job.evaluation.evaluation_id} --examples 5`")


@app.command()
def checkpoints(job_id: JobArg, addr: AddrOpt = None, as_json: JsonOpt = False) -> None:
    """List a job's checkpoints (artifact paths); a paused or redelivered job resumes from the latest."""
    with connect(addr) as stub:
        items = list(stub.ListCheckpoints(pb.ListCheckpointsRequest(job_id=job_id)).checkpoints)
    if as_json:
        print_json({"checkpoints": [to_dict(c) for c in items]})
        return
    if not items:
        info(f"job {job_id} has no checkpoints yet")
        return
    t = output.table("step", "epoch", "path", "created")
    for c in items:
        t.add_row(str(c.step), f"{c.epoch:.2f}", escape(c.path), when(c.create_time))
    console.print(t)


@app.command()
def models(addr: AddrOpt = None, as_json: JsonOpt = False) -> None:
    """Base models of the catalog (a local transformers folder or a hub id works too)."""
    with connect(addr) as stub:
        items = list(stub.ListBaseModels(pb.ListBaseModelsRequest()).models)
    if as_json:
        print_json({"models": [to_dict(m) for m in items]})
        return
    t = output.table("name", "default", "context", "source", "description")
    for m in items:
        t.add_row(escape(m.name), "yes" if m.default else "", str(m.context_length or ""), m.source,
                  escape(m.description))
    console.print(t)


@app.command()
def backends(addr: AddrOpt = None, as_json: JsonOpt = False) -> None:
    """Installed training backends and every setting `--config KEY=VALUE` accepts."""
    with connect(addr) as stub:
        items = list(stub.ListBackends(pb.ListBackendsRequest()).backends)
    if as_json:
        print_json({"backends": [to_dict(b) for b in items]})
        return
    for b in items:
        methods = ", ".join(pb.Method.Name(m).removeprefix("METHOD_").lower() for m in b.methods)
        say(f"[bold]{escape(b.name)}[/]: {escape(b.description)} (methods: {methods or '-'}; "
            f"from {escape(b.provided_by or 'tunery')})")
        if not b.config:
            say("  no settings")
            continue
        t = output.table("setting", "type", "default", "help")
        for f in b.config:
            t.add_row(escape(f.name), escape(f.type), escape(f.default_json), escape(f.help))
        console.print(t)


# ---- control ---------------------------------------------------------------------------------------------------


@app.command()
def cancel(job_id: JobArg, addr: AddrOpt = None) -> None:
    """Cancel a job; a running one stops within seconds and keeps its checkpoints."""
    with connect(addr) as stub:
        job = stub.CancelJob(pb.CancelJobRequest(job_id=job_id)).job
    say(f"cancelled job {job.id} ({styled(job.state)})")


@app.command()
def pause(job_id: JobArg, addr: AddrOpt = None) -> None:
    """Pause a job: a running one checkpoints and stops, a queued one is held back."""
    with connect(addr) as stub:
        job = stub.PauseJob(pb.PauseJobRequest(job_id=job_id)).job
    say(f"paused job {job.id} ({styled(job.state)}); `tunery jobs resume {job.id}` continues it")


@app.command()
def resume(job_id: JobArg, addr: AddrOpt = None) -> None:
    """Queue a paused job again; it continues from its latest checkpoint."""
    with connect(addr) as stub:
        job = stub.ResumeJob(pb.ResumeJobRequest(job_id=job_id)).job
    say(f"resumed job {job.id} ({styled(job.state)}); it continues from its latest checkpoint")


@app.command()
def watch(job_id: JobArg,
          from_sequence: Annotated[int, typer.Option(min=0, help="Start after this event (0: from the start).")] = 0,
          log_every: Annotated[int, typer.Option(min=1, help="Off a terminal: one step line every N steps (plus the "
                                                 "first and last).")] = 10,
          addr: AddrOpt = None) -> None:
    """Follow a job live until it ends: progress, loss, checkpoints, validations; exit code 0 only if it succeeded."""
    with connect(addr) as stub:
        code = follow(stub, job_id, from_sequence, log_every)
    raise typer.Exit(code)
