"""`tunery datasets ...`: the dataset service over gRPC, one call per command, every call with a deadline."""

from __future__ import annotations

import importlib.resources
import json
import os
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from tunery.cli import output, rpc
from tunery.cli.common import JsonOpt, kv, more_hint, page_request, paged
from tunery.cli.output import console, info, print_json, say, to_dict, when
from tunery.common.v1 import common_pb2
from tunery.dataset.v1 import dataset_pb2 as pb
from tunery.dataset.v1 import dataset_pb2_grpc
from tunery.runtime.grpcerrors import problem_from_proto

app = typer.Typer(help="Datasets: create, upload, curate, freeze versions, export.", no_args_is_help=True)

CHUNK = 1024 * 1024
LONG = 3600.0
"""Deadline for calls that move or tokenize a whole dataset; still a deadline, as every call must have one."""
SAMPLE = "@sample"

AddrOpt = Annotated[str | None, typer.Option("--addr", envvar="TUNERY_DATASET_ADDR", show_envvar=True,
                                             help="Dataset service host:port (default: up.json, else 127.0.0.1:50051)")]
DatasetArg = Annotated[str, typer.Argument(help="Dataset name or id.")]
VersionOpt = Annotated[int, typer.Option("--version", "-v", min=0, help="Version number; 0 is the draft.")]


def connect(addr: str | None) -> AbstractContextManager[dataset_pb2_grpc.DatasetServiceStub]:
    """A dataset service stub; any failure inside ends the command with one clear line and exit code 1."""
    return rpc.connect("dataset", dataset_pb2_grpc.DatasetServiceStub, addr)


def _dataset_rows(ds: pb.Dataset) -> list[tuple[str, Any]]:
    return [("name", ds.name), ("id", ds.id), ("description", ds.description), ("format", ds.format or "-"),
            ("draft examples", ds.draft_example_count),
            ("latest version", ds.latest_version or "none (freeze one with `tunery datasets freeze`)"),
            ("draft modified", "yes" if ds.draft_modified else "no"), ("created", when(ds.create_time)),
            ("updated", when(ds.update_time))]


def _print_warnings(warnings: list[common_pb2.ProblemDetail], count: int) -> None:
    t = output.warnings_table([problem_from_proto(p) for p in warnings], max(count, len(warnings)))
    if t is not None:
        output.err_console.print(t)


def _read_example(arg: str) -> str:
    """Inline JSON, `@FILE`, or `@-` for stdin."""
    if not arg.startswith("@"):
        return arg
    if arg == "@-":
        return sys.stdin.read()
    try:
        return Path(arg[1:]).expanduser().read_text()
    except OSError as err:
        raise typer.BadParameter(f"cannot read {arg[1:]}: {err.strerror}") from err


@contextmanager
def _source(file: str) -> Iterator[tuple[Path, str]]:
    """The file to stream and the name the server sees; `@sample` is the chat dataset bundled with Tunery."""
    if file == SAMPLE:
        ref = importlib.resources.files("tunery") / "data" / "sample_chat.jsonl"
        with importlib.resources.as_file(ref) as path:
            if not path.is_file():
                raise typer.BadParameter("the bundled sample is missing from this installation")
            yield path, "sample_chat.jsonl"
        return
    path = Path(file).expanduser()
    if not path.is_file():
        raise typer.BadParameter(f"{file}: no such file" if not path.exists() else f"{file}: not a regular file")
    if not os.access(path, os.R_OK):
        raise typer.BadParameter(f"{file}: not readable")
    yield path, path.name


def _stream(path: Path, header: pb.UploadHeader, verb: str) -> Iterator[pb.UploadExamplesRequest]:
    """Header first, then 1 MiB chunks, advancing a progress bar (hidden when stderr is not a terminal)."""
    progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                        TimeRemainingColumn(), console=output.err_console, transient=True,
                        disable=not output.err_console.is_terminal)
    with progress, path.open("rb") as fh:
        task = progress.add_task(f"{verb} {escape(header.filename)}", total=header.size_bytes)
        yield pb.UploadExamplesRequest(header=header)
        while chunk := fh.read(CHUNK):
            yield pb.UploadExamplesRequest(chunk=chunk)
            progress.advance(task, len(chunk))


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _preview(raw: str) -> tuple[str, str]:
    """What tells examples apart at a glance: the first user turn and the (preferred) last assistant reply."""
    try:
        obj = json.loads(raw)
    except ValueError:
        return raw, ""

    def content(m: Any) -> str:
        c = m.get("content") if isinstance(m, dict) else None
        if isinstance(c, list):
            c = " ".join(str(p.get("text", "")) for p in c if isinstance(p, dict))
        return " ".join(str(c or "").split())

    if not isinstance(obj, dict):
        return raw, ""
    if "prompt" in obj:
        return content({"content": obj.get("prompt")}), content({"content": obj.get("completion")})
    msgs = obj.get("messages") or (obj.get("input") or {}).get("messages")
    if not isinstance(msgs, list):
        return raw, ""
    user = next((content(m) for m in msgs if isinstance(m, dict) and m.get("role") == "user"), "")
    replies = obj.get("preferred_output") or [m for m in msgs if isinstance(m, dict) and m.get("role") == "assistant"]
    return user, content(replies[-1]) if replies else ""


# ---- datasets --------------------------------------------------------------------------------------------------


@app.command()
def create(name: Annotated[str, typer.Argument(help="1-64 letters, digits, '-', '_', '.'; unique.")],
           description: Annotated[str, typer.Option("--description", "-d")] = "", addr: AddrOpt = None,
           as_json: JsonOpt = False) -> None:
    """Create an empty dataset."""
    with connect(addr) as stub:
        ds = stub.CreateDataset(pb.CreateDatasetRequest(name=name, description=description)).dataset
    if as_json:
        print_json(ds)
        return
    say(f"created dataset [bold]{escape(ds.name)}[/] ({ds.id})")


@app.command("list")
def list_datasets(page_size: Annotated[int, typer.Option(min=0, max=1000)] = 50,
                  page_token: Annotated[str, typer.Option()] = "",
                  every: Annotated[bool, typer.Option("--all", help="Follow page tokens to the end.")] = False,
                  addr: AddrOpt = None, as_json: JsonOpt = False) -> None:
    """List datasets."""
    with connect(addr) as stub:
        def fetch(token: str) -> tuple[list[Any], common_pb2.PageResponse]:
            r = stub.ListDatasets(pb.ListDatasetsRequest(page=page_request(page_size, token)))
            return list(r.datasets), r.page

        items, page = paged(fetch, page_token, every)
    if as_json:
        print_json({"datasets": [to_dict(d) for d in items], "page": to_dict(page)})
        return
    t = output.table("name", "id", "examples", "latest version", "format", "modified", "updated")
    for d in items:
        t.add_row(escape(d.name), d.id, str(d.draft_example_count), str(d.latest_version or "-"), d.format or "-",
                  "yes" if d.draft_modified else "", when(d.update_time))
    if items:
        console.print(t)
    else:
        info("no datasets yet: `tunery datasets create NAME`")
    more_hint(len(items), page)


@app.command()
def show(dataset: DatasetArg, addr: AddrOpt = None, as_json: JsonOpt = False) -> None:
    """Show one dataset."""
    with connect(addr) as stub:
        ds = stub.GetDataset(pb.GetDatasetRequest(dataset=dataset)).dataset
    if as_json:
        print_json(ds)
        return
    console.print(kv(_dataset_rows(ds)))


@app.command()
def rename(dataset: DatasetArg, new_name: Annotated[str, typer.Argument(metavar="NEW")],
           addr: AddrOpt = None) -> None:
    """Rename a dataset (its id and versions stay)."""
    with connect(addr) as stub:
        ds = stub.UpdateDataset(pb.UpdateDatasetRequest(dataset=dataset, name=new_name)).dataset
    say(f"renamed {escape(dataset)} to [bold]{escape(ds.name)}[/]")


@app.command()
def delete(dataset: DatasetArg, yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
           addr: AddrOpt = None) -> None:
    """Delete a dataset with its draft and all versions."""
    if not yes:
        typer.confirm(f"delete dataset {dataset} with all its versions?", abort=True)
    with connect(addr) as stub:
        stub.DeleteDataset(pb.DeleteDatasetRequest(dataset=dataset))
    say(f"deleted dataset {escape(dataset)}")


# ---- files -----------------------------------------------------------------------------------------------------


@app.command()
def upload(dataset: DatasetArg,
           file: Annotated[str, typer.Argument(help="JSONL file, or @sample for the bundled chat dataset.")],
           replace: Annotated[bool, typer.Option("--replace", help="Replace the draft instead of appending.")] = False,
           tag: Annotated[list[str] | None, typer.Option("--tag", "-t", help="Tag every uploaded example.")] = None,
           base_model: Annotated[str, typer.Option(help="Warn about examples longer than its context.")] = "",
           addr: AddrOpt = None, as_json: JsonOpt = False) -> None:
    """Upload a JSONL file into the draft; a file with any error is rejected whole and nothing is stored."""
    with _source(file) as (path, name), connect(addr) as stub:
        header = pb.UploadHeader(dataset=dataset, filename=name, size_bytes=path.stat().st_size, replace=replace,
                                 tags=tag or [], base_model=base_model)
        r = stub.UploadExamples(_stream(path, header, "uploading"), timeout=LONG)
    if as_json:
        print_json(r)
        return
    say(f"uploaded {r.examples_added} examples ({r.format}, {r.lines} lines, {output.human_bytes(r.bytes)}) "
                  f"from {escape(name)} to {escape(r.dataset.name)}; the draft now has "
                  f"{r.dataset.draft_example_count} examples")
    _print_warnings(list(r.warnings), r.warning_count)


@app.command()
def validate(file: Annotated[str, typer.Argument(help="JSONL file, or @sample.")], addr: AddrOpt = None,
             as_json: JsonOpt = False) -> None:
    """Check a JSONL file with the server's validator without storing anything."""
    with _source(file) as (path, name), connect(addr) as stub:
        header = pb.UploadHeader(filename=name, size_bytes=path.stat().st_size)
        r = stub.ValidateFile(_stream(path, header, "validating"), timeout=LONG)
    if as_json:
        print_json(r)
        return
    say(f"{escape(name)}: valid, {r.lines} lines, format {r.format}, {r.warning_count} warnings")
    _print_warnings(list(r.warnings), r.warning_count)


@app.command()
def export(dataset: DatasetArg, version: VersionOpt = 0,
           out: Annotated[Path | None, typer.Option("--output", "-o", help="File to write; default stdout.")] = None,
           addr: AddrOpt = None) -> None:
    """Write a version (or the draft) as JSONL, exactly as stored."""
    req = pb.ExportVersionRequest(dataset=dataset, version=version)
    if out is None:
        with output.stdout_pipe(), connect(addr) as stub:
            for r in stub.ExportVersion(req, timeout=LONG):
                sys.stdout.buffer.write(r.chunk)
            sys.stdout.buffer.flush()
        return
    tmp = out.with_name(f".{out.name}.part{os.getpid()}")
    size = 0
    try:
        with connect(addr) as stub, tmp.open("wb") as fh:
            for r in stub.ExportVersion(req, timeout=LONG):
                fh.write(r.chunk)
                size += len(r.chunk)
        tmp.replace(out)  # all or nothing: a failed export leaves no half-written file behind
    except OSError as err:
        output.fail(f"cannot write {out}: {err.strerror or err}")
    finally:
        tmp.unlink(missing_ok=True)
    info(f"wrote {output.human_bytes(size)} to {out}")


# ---- examples --------------------------------------------------------------------------------------------------


@app.command()
def examples(dataset: DatasetArg, version: VersionOpt = 0,
             tag: Annotated[str, typer.Option("--tag", "-t", help="Only examples with this tag.")] = "",
             text: Annotated[str, typer.Option(help="Only examples containing this text (case-insensitive).")] = "",
             page_size: Annotated[int, typer.Option(min=0, max=1000)] = 50,
             page_token: Annotated[str, typer.Option()] = "",
             every: Annotated[bool, typer.Option("--all", help="Follow page tokens to the end.")] = False,
             addr: AddrOpt = None, as_json: JsonOpt = False) -> None:
    """List examples of the draft or of a version."""
    with connect(addr) as stub:
        def fetch(token: str) -> tuple[list[Any], common_pb2.PageResponse]:
            r = stub.ListExamples(pb.ListExamplesRequest(dataset=dataset, version=version, tag=tag, text=text,
                                                         page=page_request(page_size, token)))
            return list(r.examples), r.page

        items, page = paged(fetch, page_token, every)
    if as_json:
        print_json({"examples": [to_dict(e) for e in items], "page": to_dict(page)})
        return
    rows = [(str(e.position), e.id, ",".join(e.tags), *_preview(e.json)) for e in items]
    # Ids stay whole (people copy them into the next command); the texts share what is left of the line.
    fixed = [max([len(name)] + [len(r[i]) for r in rows]) for i, name in enumerate(("#", "id", "tags"))]
    text_width = max(12, min(80, (console.width - sum(fixed) - 16) // 2))
    t = output.table("#", "id", "tags", "user", "assistant")
    for pos, ex_id, tags, user, reply in rows:
        t.add_row(pos, ex_id, escape(tags), escape(_clip(user, text_width)), escape(_clip(reply, text_width)))
    if items:
        console.print(t)
    else:
        info("no examples match" if tag or text else "no examples")
    more_hint(len(items), page)


@app.command()
def example(dataset: DatasetArg, example_id: Annotated[str, typer.Argument(metavar="ID")], addr: AddrOpt = None,
            as_json: JsonOpt = False) -> None:
    """Show one example of the draft."""
    with connect(addr) as stub:
        ex = stub.GetExample(pb.GetExampleRequest(dataset=dataset, example_id=example_id)).example
    if as_json:
        print_json(ex)
        return
    console.print(kv([("id", ex.id), ("position", ex.position), ("tags", ", ".join(ex.tags) or "-"),
                       ("created", when(ex.create_time))]))
    console.print_json(ex.json)


@app.command()
def add(dataset: DatasetArg,
        example_json: Annotated[str, typer.Argument(metavar="JSON_OR_@FILE", help="One example; @- reads stdin.")],
        tag: Annotated[list[str] | None, typer.Option("--tag", "-t")] = None, addr: AddrOpt = None) -> None:
    """Add one example to the draft."""
    raw = _read_example(example_json)
    with connect(addr) as stub:
        r = stub.AddExample(pb.AddExampleRequest(dataset=dataset, json=raw, tags=tag or []))
    say(f"added example {r.example.id}")
    _print_warnings(list(r.warnings), len(r.warnings))


@app.command()
def edit(dataset: DatasetArg, example_id: Annotated[str, typer.Argument(metavar="ID")],
         example_json: Annotated[str, typer.Argument(metavar="JSON_OR_@FILE", help="The new example; @- reads stdin.")],
         addr: AddrOpt = None) -> None:
    """Replace one example of the draft."""
    raw = _read_example(example_json)
    with connect(addr) as stub:
        r = stub.UpdateExample(pb.UpdateExampleRequest(dataset=dataset, example_id=example_id, json=raw))
    say(f"updated example {r.example.id}")
    _print_warnings(list(r.warnings), len(r.warnings))


@app.command("rm-example")
def rm_example(dataset: DatasetArg, example_id: Annotated[str, typer.Argument(metavar="ID")],
               addr: AddrOpt = None) -> None:
    """Remove one example from the draft (frozen versions keep it)."""
    with connect(addr) as stub:
        stub.DeleteExample(pb.DeleteExampleRequest(dataset=dataset, example_id=example_id))
    say(f"removed example {example_id}")


@app.command()
def tag(dataset: DatasetArg, example_ids: Annotated[list[str], typer.Argument(metavar="ID...")],
        add_tags: Annotated[list[str] | None, typer.Option("--add", help="Tag to add (repeatable).")] = None,
        remove_tags: Annotated[list[str] | None, typer.Option("--remove", help="Tag to remove (repeatable).")] = None,
        addr: AddrOpt = None) -> None:
    """Add or remove tags on examples of the draft."""
    if not add_tags and not remove_tags:
        raise typer.BadParameter("give --add TAG and/or --remove TAG")
    with connect(addr) as stub:
        r = stub.TagExamples(pb.TagExamplesRequest(dataset=dataset, example_ids=example_ids, add_tags=add_tags or [],
                                                   remove_tags=remove_tags or []))
    say(f"updated tags of {r.updated} examples")


# ---- versions --------------------------------------------------------------------------------------------------


def _version_rows(v: pb.Version) -> list[tuple[str, Any]]:
    return [("version", v.number), ("examples", v.example_count), ("format", v.format or "-"),
            ("message", v.message), ("split", f"{v.split} of v{v.parent_version}" if v.split else "-"),
            ("sha256", v.content_sha256), ("created", when(v.create_time)),
            ("used by", ", ".join(v.references) or "-")]


@app.command()
def freeze(dataset: DatasetArg, message: Annotated[str, typer.Option("--message", "-m")] = "",
           addr: AddrOpt = None, as_json: JsonOpt = False) -> None:
    """Snapshot the draft as the next immutable version."""
    with connect(addr) as stub:
        v = stub.FreezeVersion(pb.FreezeVersionRequest(dataset=dataset, message=message), timeout=LONG).version
    if as_json:
        print_json(v)
        return
    say(f"froze version {v.number} of {escape(dataset)}: {v.example_count} examples "
                  f"(sha256 {v.content_sha256[:12]})")


@app.command()
def versions(dataset: DatasetArg, addr: AddrOpt = None, as_json: JsonOpt = False) -> None:
    """List the frozen versions of a dataset."""
    with connect(addr) as stub:
        def fetch(token: str) -> tuple[list[Any], common_pb2.PageResponse]:
            r = stub.ListVersions(pb.ListVersionsRequest(dataset=dataset, page=page_request(1000, token)))
            return list(r.versions), r.page

        items, page = paged(fetch, "", True)
    if as_json:
        print_json({"versions": [to_dict(v) for v in items], "page": to_dict(page)})
        return
    if not items:
        info(f"{dataset} has no versions yet: `tunery datasets freeze {dataset}`")
        return
    t = output.table("version", "examples", "created", "split", "sha256", "used by", "message")
    for v in items:
        t.add_row(str(v.number), str(v.example_count), when(v.create_time),
                  f"{v.split} of v{v.parent_version}" if v.split else "", v.content_sha256[:12],
                  escape(", ".join(v.references)), escape(v.message))
    console.print(t)


@app.command("delete-version")
def delete_version(dataset: DatasetArg, version: Annotated[int, typer.Argument(metavar="N", min=1)],
                   addr: AddrOpt = None) -> None:
    """Delete a version that no job or evaluation uses."""
    with connect(addr) as stub:
        stub.DeleteVersion(pb.DeleteVersionRequest(dataset=dataset, version=version))
    say(f"deleted version {version} of {escape(dataset)}")


@app.command()
def split(dataset: DatasetArg, version: Annotated[int, typer.Argument(metavar="VERSION", min=1)],
          validation_fraction: Annotated[float, typer.Option(min=0.0, max=1.0)] = 0.1,
          seed: Annotated[int, typer.Option()] = 0, addr: AddrOpt = None, as_json: JsonOpt = False) -> None:
    """Split a version into new train and validation versions (seeded, reproducible)."""
    with connect(addr) as stub:
        r = stub.SplitVersion(pb.SplitVersionRequest(dataset=dataset, version=version,
                                                     validation_fraction=validation_fraction, seed=seed), timeout=LONG)
    if as_json:
        print_json(r)
        return
    say(f"split version {version}: train = version {r.train.number} ({r.train.example_count} examples), "
                  f"validation = version {r.validation.number} ({r.validation.example_count} examples)")


# ---- curation --------------------------------------------------------------------------------------------------


@app.command()
def dedup(dataset: DatasetArg,
          near: Annotated[bool, typer.Option("--near/--no-near", help="Also find near duplicates (MinHash).")] = True,
          threshold: Annotated[float, typer.Option(min=0.0, max=1.0, help="Jaccard similarity; 0 = 0.85.")] = 0.0,
          remove: Annotated[bool, typer.Option("--remove", help="Delete all but the first of each group.")] = False,
          addr: AddrOpt = None, as_json: JsonOpt = False) -> None:
    """Report duplicate examples in the draft; delete them only with --remove."""
    with connect(addr) as stub:
        r = stub.Deduplicate(pb.DeduplicateRequest(dataset=dataset, near=near, threshold=threshold, remove=remove),
                             timeout=LONG)
    if as_json:
        print_json(r)
        return
    doomed = sum(len(g.example_ids) - 1 for g in r.groups)
    if not r.groups:
        say("no duplicates found")
        return
    t = output.table("kind", "similarity", "keep", "duplicates")
    for g in r.groups:
        t.add_row(g.kind, f"{g.similarity:.2f}", g.example_ids[0], "\n".join(g.example_ids[1:]))
    console.print(t)
    if remove:
        say(f"removed {r.removed} examples; the draft now has {r.dataset.draft_example_count}")
    else:
        say(f"{len(r.groups)} groups; {doomed} examples would be removed: run again with --remove")


@app.command()
def stats(dataset: DatasetArg, version: VersionOpt = 0,
          base_model: Annotated[str, typer.Option(help="Whose tokenizer counts; default smollm2-135m-instruct.")] = "",
          epochs: Annotated[int, typer.Option(min=0, help="Epochs for the estimate; 0 = auto.")] = 0,
          addr: AddrOpt = None, as_json: JsonOpt = False) -> None:
    """Token statistics with a base model's tokenizer and chat template."""
    with connect(addr) as stub:
        s = stub.GetStatistics(pb.GetStatisticsRequest(dataset=dataset, version=version, base_model=base_model,
                                                       n_epochs=epochs), timeout=LONG).statistics
    if as_json:
        print_json(s)
        return
    console.print(kv([("base model", s.base_model), ("examples", s.examples), ("total tokens", s.total_tokens),
                       ("tokens per example", f"min {s.min_tokens}, mean {s.mean_tokens:.1f}, p50 {s.p50_tokens}, "
                                              f"p95 {s.p95_tokens}, max {s.max_tokens}"),
                       ("trained tokens", s.trained_tokens),
                       ("over context", f"{s.over_context} (context {s.context_length})"),
                       ("epochs", s.n_epochs), ("estimated training tokens", s.estimated_training_tokens)]))
