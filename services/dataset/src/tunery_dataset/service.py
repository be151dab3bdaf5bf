"""Dataset domain logic: validation, storage, curation, statistics and events, on plain Python objects."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import orjson

from tunery.errors import FailedPrecondition, InvalidArgument, Problem, ResourceExhausted
from tunery.models import resolve
from tunery.split import content_hash, split_by_hash
from tunery_dataset import curation, tokens
from tunery_dataset.records import DatasetInfo, ExampleInfo, VersionInfo, check_tags
from tunery_dataset.settings import DatasetSettings
from tunery_dataset.store import DatasetStore
from tunery_dataset.validation import JsonlValidator, UploadTooLarge, validate_object

log = logging.getLogger("tunery.dataset")
T = TypeVar("T")
EXPORT_CHUNK = 1024 * 1024


@dataclass(slots=True)
class UploadHeader:
    dataset: str
    filename: str = ""
    size_bytes: int = 0
    replace: bool = False
    tags: list[str] = field(default_factory=list)
    base_model: str = ""


@dataclass(slots=True)
class UploadResult:
    examples_added: int
    lines: int
    bytes: int
    format: str
    warnings: list[Problem]
    warning_count: int
    dataset: DatasetInfo | None


@dataclass(frozen=True, slots=True)
class Stats:
    base_model: str
    context_length: int
    stats: curation.TokenStats


def _parse_example(raw: str, field_name: str = "json") -> tuple[str, dict[str, Any], list[Problem]]:
    """Validate one hand-written example; errors name the field."""
    if not raw:
        raise InvalidArgument(
            f"field '{field_name}' is required (one example as a JSON object)", code="missing_field", field=field_name
        )
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise InvalidArgument(f"{field_name} is not valid JSON: {err}", code="invalid_json", field=field_name) from err
    fmt, problems = validate_object(obj)
    errors = [p for p in problems if p.severity == "error"]
    if errors or fmt is None:
        raise InvalidArgument(
            f"the example is not valid: {errors[0].message if errors else 'unknown format'}",
            code="invalid_example",
            field=field_name,
            problems=tuple(errors),
        )
    return fmt, obj, [p for p in problems if p.severity == "warning"]


class DatasetEvents(Protocol):
    """Where the service announces what changed (NATS in production: `publish.NatsDatasetEvents`)."""

    async def publish(
        self, event_type: str, ds: DatasetInfo, version: VersionInfo | None, event_id: str | None
    ) -> None: ...


class DatasetService:
    def __init__(self, settings: DatasetSettings, store: DatasetStore, events: DatasetEvents | None) -> None:
        self.settings = settings
        self.store = store
        self.events = events
        self.spool_dir = settings.service_dir / "spool"
        self.spool_dir.mkdir(parents=True, exist_ok=True)

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    async def _emit(
        self, event_type: str, ds: DatasetInfo, version: VersionInfo | None = None, event_id: str | None = None
    ) -> None:
        if self.events is None:
            return
        try:
            await self.events.publish(event_type, ds, version, event_id)
        except Exception:
            log.exception("event %s for %s not published", event_type, ds.id)

    # ---- datasets -------------------------------------------------------------------------------------------
    async def create(self, name: str, description: str) -> DatasetInfo:
        ds: DatasetInfo = await self._run(self.store.create, name, description)
        await self._emit("dataset.created", ds, event_id=f"dataset.{ds.id}.created")
        return ds

    async def get(self, ref: str) -> DatasetInfo:
        return await self._run(self.store.get, ref)  # type: ignore[no-any-return]

    async def list(self, page_size: int, page_token: str) -> tuple[list[DatasetInfo], str, int]:
        return await self._run(self.store.list, page_size, page_token)  # type: ignore[no-any-return]

    async def update(self, ref: str, name: str, description: str | None) -> DatasetInfo:
        ds: DatasetInfo = await self._run(self.store.update, ref, name, description)
        await self._emit("dataset.updated", ds)
        return ds

    async def delete(self, ref: str) -> DatasetInfo:
        ds: DatasetInfo = await self._run(self.store.delete, ref)
        await self._emit("dataset.deleted", ds, event_id=f"dataset.{ds.id}.deleted")
        return ds

    # ---- upload ---------------------------------------------------------------------------------------------
    async def upload(self, header: UploadHeader, chunks: AsyncIterator[bytes], *, store: bool) -> UploadResult:
        """Validate the stream line by line while spooling valid lines to disk; store all or nothing."""
        s = self.settings
        if header.size_bytes > s.max_upload_bytes:
            raise ResourceExhausted(
                f"{header.filename or 'the file'} is {header.size_bytes} bytes; "
                f"the limit is {s.max_upload_bytes} bytes",
                code="file_too_large",
                field="header.size_bytes",
            )
        tags = check_tags(header.tags, "header.tags")
        base = resolve(header.base_model) if header.base_model else None
        ds: DatasetInfo | None = None
        token = ""
        if store:
            ds, token = await self._run(self.store.lock_upload, header.dataset)
        spool = self.spool_dir / f"upload-{os.getpid()}-{id(header)}-{token or 'check'}.jsonl"
        name = header.filename or "upload"
        try:
            validator = JsonlValidator(
                max_line_bytes=s.max_line_bytes,
                max_file_bytes=s.max_upload_bytes,
                max_problems=s.max_problems,
                filename=name,
            )
            with spool.open("wb") as out:

                def consume(chunk: bytes | None) -> None:
                    done = validator.feed(chunk) if chunk is not None else validator.finish()
                    if validator.error_count == 0 and store:
                        out.write(b"".join(ex.raw + b"\n" for ex in done))

                try:
                    async for chunk in chunks:
                        await self._run(consume, chunk)
                    await self._run(consume, None)
                except UploadTooLarge as err:
                    raise ResourceExhausted(str(err), code="file_too_large", field="chunk") from err
            if not validator.ok:
                first = validator.errors[0].message if validator.errors else ""
                raise InvalidArgument(
                    f"{name}: rejected, nothing stored: {validator.error_count} problem(s); first: {first}",
                    code="validation_failed",
                    field="chunk",
                    problems=tuple(validator.errors),
                    problem_count=validator.error_count,
                )
            warnings = list(validator.warnings)
            warning_count = validator.warning_count
            fmt = validator.format or ""
            if base is not None:
                extra = await self._run(self._context_warnings, spool, base.name, name) if store else []
                warnings += extra[: s.max_problems]
                warning_count += len(extra)
            added = 0
            if store:
                assert ds is not None

                def lines() -> Iterator[bytes]:
                    with spool.open("rb") as fh:
                        for line in fh:
                            yield line.rstrip(b"\n")

                added = await self._run(self.store.append_examples, ds.id, lines(), fmt, tags, header.replace)
                ds = await self.get(ds.id)
                await self._emit("dataset.examples.uploaded", ds)
            return UploadResult(added, validator.lines, validator.bytes_seen, fmt, warnings, warning_count, ds)
        finally:
            spool.unlink(missing_ok=True)
            if token and ds is not None:
                await self._run(self.store.unlock_upload, ds.id, token)

    def _context_warnings(self, spool: Path, model: str, filename: str) -> list[Problem]:
        spec = resolve(model)
        tok = tokens.load_tokenizer(spec, self.settings.data_dir)

        def objs() -> Iterator[dict[str, Any]]:
            with spool.open("rb") as fh:
                for line in fh:
                    yield orjson.loads(line)

        out = []
        for i, (n, _) in enumerate(tokens.count(tok, objs()), start=1):
            if spec.context_length and n > spec.context_length:
                out.append(
                    Problem(
                        code="longer_than_context",
                        severity="warning",
                        line=i,
                        file=filename,
                        message=f"line {i}: {n} tokens, longer than {spec.name}'s context of "
                        f"{spec.context_length}; it will be truncated",
                    )
                )
        return out

    # ---- examples -------------------------------------------------------------------------------------------
    async def add_example(self, ref: str, raw: str, tags: list[str]) -> tuple[ExampleInfo, list[Problem]]:
        fmt, obj, warnings = _parse_example(raw)
        canonical = orjson.dumps(obj).decode()
        ex = await self._run(self.store.add_example, ref, canonical, fmt, check_tags(tags))
        return ex, warnings

    async def update_example(self, ref: str, example_id: str, raw: str) -> tuple[ExampleInfo, list[Problem]]:
        fmt, obj, warnings = _parse_example(raw)
        ex = await self._run(self.store.update_example, ref, example_id, orjson.dumps(obj).decode(), fmt)
        return ex, warnings

    async def get_example(self, ref: str, example_id: str) -> ExampleInfo:
        return await self._run(self.store.get_example, ref, example_id)  # type: ignore[no-any-return]

    async def delete_example(self, ref: str, example_id: str) -> None:
        if not example_id:
            raise InvalidArgument("field 'example_id' is required", code="missing_field", field="example_id")
        await self._run(self.store.delete_examples, ref, [example_id])

    async def tag_examples(self, ref: str, ids: list[str], add: list[str], remove: list[str]) -> int:
        if not ids:
            raise InvalidArgument("field 'example_ids' is required", code="missing_field", field="example_ids")
        if not add and not remove:
            raise InvalidArgument("give add_tags or remove_tags", code="missing_field", field="add_tags")
        return await self._run(
            self.store.tag_examples,
            ref,
            ids,
            check_tags(add, "add_tags"),  # type: ignore[no-any-return]
            check_tags(remove, "remove_tags"),
        )

    async def list_examples(
        self, ref: str, version: int, page_size: int, page_token: str, tag: str, text: str
    ) -> tuple[list[ExampleInfo], str, int]:
        return await self._run(self.store.list_examples, ref, version, page_size, page_token, tag, text)  # type: ignore[no-any-return]

    # ---- versions -------------------------------------------------------------------------------------------
    async def freeze(self, ref: str, message: str) -> VersionInfo:
        v: VersionInfo = await self._run(self.store.freeze, ref, message)
        ds = await self.get(v.dataset_id)
        await self._emit("dataset.version.frozen", ds, v, event_id=f"dataset.{ds.id}.version.{v.number}.frozen")
        return v

    async def get_version(self, ref: str, number: int) -> VersionInfo:
        return await self._run(self.store.get_version, ref, number)  # type: ignore[no-any-return]

    async def list_versions(self, ref: str, page_size: int, page_token: str) -> tuple[list[VersionInfo], str, int]:
        return await self._run(self.store.list_versions, ref, page_size, page_token)  # type: ignore[no-any-return]

    async def delete_version(self, ref: str, number: int) -> VersionInfo:
        if number <= 0:
            raise InvalidArgument(
                "field 'version' must be a version number >= 1", code="missing_field", field="version"
            )
        v: VersionInfo = await self._run(self.store.delete_version, ref, number)
        ds = await self.get(v.dataset_id)
        await self._emit("dataset.version.deleted", ds, v, event_id=f"dataset.{ds.id}.version.{v.number}.deleted")
        return v

    async def set_reference(self, ref: str, number: int, reference: str, add: bool) -> VersionInfo:
        return await self._run(self.store.set_reference, ref, number, reference, add)  # type: ignore[no-any-return]

    async def split(self, ref: str, number: int, fraction: float, seed: int) -> tuple[VersionInfo, VersionInfo]:
        if number <= 0:
            raise InvalidArgument(
                "field 'version' is required: split works on a frozen version", code="missing_field", field="version"
            )
        if not 0 < fraction < 1:
            raise InvalidArgument(
                f"validation_fraction must be between 0 and 1 (exclusive), not {fraction}",
                code="invalid_fraction",
                field="validation_fraction",
            )

        def work() -> tuple[VersionInfo, VersionInfo]:
            # By content, not by example id (new on every upload): the same file splits the same way in any
            # dataset, and exactly as the trainer splits it (both call `tunery.split`).
            ids: list[str] = []
            hashes: list[str] = []
            for eid, raw in self.store.iter_contents(ref, number):
                ids.append(eid)
                hashes.append(content_hash(orjson.loads(raw)))
            try:
                train, val = split_by_hash(hashes, fraction, seed)
            except ValueError as err:
                raise FailedPrecondition(
                    f"cannot split version {number}: {err}", code="too_few_examples", field="version"
                ) from err
            return self.store.split(ref, number, [ids[i] for i in train], [ids[i] for i in val], seed, fraction)

        train_v, val_v = await self._run(work)
        ds = await self.get(train_v.dataset_id)
        for v in (train_v, val_v):
            await self._emit("dataset.version.frozen", ds, v, event_id=f"dataset.{ds.id}.version.{v.number}.frozen")
        return train_v, val_v

    # ---- curation -------------------------------------------------------------------------------------------
    async def deduplicate(
        self, ref: str, near: bool, threshold: float, remove: bool
    ) -> tuple[list[curation.DuplicateGroup], int, DatasetInfo]:
        threshold = threshold or 0.85
        if not 0 < threshold <= 1:
            raise InvalidArgument(
                f"threshold must be in (0, 1], not {threshold}", code="invalid_threshold", field="threshold"
            )

        def work() -> tuple[list[curation.DuplicateGroup], int]:
            items = ((eid, orjson.loads(raw)) for eid, raw in self.store.iter_contents(ref, 0))
            groups = curation.find_duplicates(items, near=near, threshold=threshold)
            removed = 0
            if remove:
                doomed = [eid for g in groups for eid in g.ids[1:]]
                if doomed:
                    removed = self.store.delete_examples(ref, doomed)
            return groups, removed

        groups, removed = await self._run(work)
        return groups, removed, await self.get(ref)

    async def statistics(self, ref: str, version: int, base_model: str, n_epochs: int) -> Stats:
        if n_epochs < 0:
            raise InvalidArgument(
                f"n_epochs must be >= 0 (0 means auto), not {n_epochs}", code="invalid_epochs", field="n_epochs"
            )
        spec = resolve(base_model)

        def work() -> Stats:
            tok = tokens.load_tokenizer(spec, self.settings.data_dir)
            objs = (orjson.loads(raw) for _, raw in self.store.iter_contents(ref, version))
            counts = list(tokens.count(tok, objs))
            epochs = n_epochs or curation.auto_epochs(len(counts))
            stats = curation.token_stats(counts, n_epochs=epochs, context_length=spec.context_length or None)
            return Stats(spec.name, spec.context_length, stats)

        return await self._run(work)  # type: ignore[no-any-return]

    async def export(self, ref: str, version: int) -> AsyncIterator[bytes]:
        def chunks() -> Iterator[bytes]:
            buf: list[bytes] = []
            size = 0
            for _, raw in self.store.iter_contents(ref, version):
                b = raw.encode() + b"\n"
                buf.append(b)
                size += len(b)
                if size >= EXPORT_CHUNK:
                    yield b"".join(buf)
                    buf, size = [], 0
            if buf:
                yield b"".join(buf)

        it = chunks()
        sentinel = object()
        while True:
            chunk = await asyncio.to_thread(next, it, sentinel)
            if chunk is sentinel:
                return
            yield chunk  # type: ignore[misc]
