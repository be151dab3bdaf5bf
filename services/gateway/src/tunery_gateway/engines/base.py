"""The contract between the gateway and an inference engine plugin (entry-point group `tunery.inference_backends`).

The HTTP layer speaks OpenAI; an engine speaks this: a `GenerationRequest` (chat messages or a prompt, sampling
parameters, the base model and optionally a LoRA adapter) becomes a `Generation`, an async stream of text deltas per
choice ending with one `Finished` per choice. Everything a caller can get wrong about the input (context length,
template, overload) is raised by `generate` itself, before any byte of a response is sent, so a streaming call still
gets a proper HTTP status. Built-ins (`transformers`, `tgi`) load through the same entry points as third parties.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from tunery.errors import FailedPrecondition, InvalidArgument
from tunery.plugins import PluginRegistry
from tunery_gateway.settings import GatewaySettings

BASE_ADAPTER = "__base__"


@dataclass(frozen=True, slots=True)
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    # None: the gateway's default, bounded by what the context leaves.
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    n: int = 1


@dataclass(frozen=True, slots=True)
class AdapterRef:
    """A fine-tuned model: its public id, its PEFT LoRA folder and the job that trained it (if one did)."""

    model_id: str
    path: Path
    job_id: str = ""


@dataclass(frozen=True, slots=True)
class ServedBase:
    """A base model an engine serves. `spec_name` is what adapters record as their base (tunery_metadata.json)."""

    id: str
    spec_name: str
    context_length: int
    created: int = 0


@dataclass(slots=True)
class GenerationRequest:
    request_id: str
    base: str
    params: SamplingParams
    adapter: AdapterRef | None = None
    messages: list[dict[str, Any]] | None = None
    prompt: str | None = None


@dataclass(frozen=True, slots=True)
class ScoreRequest:
    """How well a model predicts `reference` as its assistant turn after `messages` (POST /v1/score)."""

    request_id: str
    base: str
    messages: list[dict[str, Any]]
    reference: str
    adapter: AdapterRef | None = None


@dataclass(frozen=True, slots=True)
class ScoreResult:
    loss: float
    """Mean cross-entropy (nats) of the scored tokens: the reference's turn through its end-of-turn token, the
    tokens the trainer trains on (`tunery.chatformat.encode_chat`)."""
    tokens: int
    total_tokens: int
    """Tokens of the whole sequence given to the model (messages and reference)."""
    token_accuracy: float
    """Share of scored tokens that are the model's argmax prediction (the trainer's valid_token_accuracy)."""


@runtime_checkable
class ScoringEngine(Protocol):
    """Optional: an engine that can score references (the transformers engine). One without it answers
    `scoring_unsupported`."""

    async def score(self, req: ScoreRequest) -> ScoreResult: ...


@dataclass(frozen=True, slots=True)
class TextDelta:
    index: int
    text: str


@dataclass(frozen=True, slots=True)
class Finished:
    index: int
    finish_reason: str  # "stop" or "length"
    completion_tokens: int


@dataclass(frozen=True, slots=True)
class Failed:
    error: BaseException


Event = TextDelta | Finished | Failed


@dataclass(eq=False)
class Generation:
    """One call's output stream. `cancel` (also called when the consumer stops early) stops the work upstream."""

    request_id: str
    prompt_tokens: int
    n: int
    max_tokens: int
    on_cancel: Callable[[], None] = lambda: None
    queue: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)
    _done: int = 0
    cancelled: bool = False

    def push(self, event: Event) -> None:
        """Called on the event loop only (engines hop threads with `call_soon_threadsafe`)."""
        self.queue.put_nowait(event)

    def cancel(self) -> None:
        if not self.cancelled and self._done < self.n:
            self.cancelled = True
            self.on_cancel()

    async def events(self) -> AsyncIterator[Event]:
        try:
            while self._done < self.n:
                ev = await self.queue.get()
                if isinstance(ev, Failed):
                    raise ev.error
                if isinstance(ev, Finished):
                    self._done += 1
                yield ev
        finally:
            self.cancel()


@runtime_checkable
class InferenceEngine(Protocol):
    name: ClassVar[str]

    async def start(self) -> None:
        """Load what is needed before the gateway answers /health."""

    async def stop(self) -> None: ...

    def bases(self) -> list[ServedBase]: ...

    async def check_adapter(self, base: ServedBase, adapter: AdapterRef) -> None:
        """Raise FailedPrecondition when the adapter cannot run on `base` (e.g. its tensor shapes do not fit).

        Called once, when the model is registered, after the registry checked the folder and its metadata
        (`inspect_adapter`); the engine may load the adapter later without checking it again."""

    async def generate(self, req: GenerationRequest) -> Generation: ...

    def stats(self) -> dict[str, Any]:
        """Per base model: running and queued sequences, loaded adapters (for /metrics and /health)."""


EngineFactory = Callable[[GatewaySettings], InferenceEngine]


def _is_engine(obj: object) -> bool:
    return callable(obj) and all(hasattr(obj, m) for m in ("start", "stop", "bases", "generate", "check_adapter"))


ENGINES: PluginRegistry[EngineFactory] = PluginRegistry("tunery.inference_backends", "inference engine",
                                                        check=_is_engine)


@dataclass(frozen=True, slots=True)
class AdapterInfo:
    """What an adapter folder's tunery_metadata.json (written by the trainer) says; "" where it says nothing."""

    base_model: str = ""
    fine_tuned_model: str = ""
    job_id: str = ""


def inspect_adapter(adapter: AdapterRef) -> AdapterInfo:
    """Check that the folder is a PEFT LoRA adapter and read its metadata: once, when the model is registered
    (registry.py); later loads trust the registered record."""
    path = adapter.path
    if not (path / "adapter_config.json").is_file():
        raise FailedPrecondition(f"{adapter.model_id}: {path} has no adapter_config.json; not a PEFT adapter folder",
                                 code="invalid_adapter", field="model")
    if not (path / "adapter_model.safetensors").is_file():
        raise FailedPrecondition(f"{adapter.model_id}: {path} has no adapter_model.safetensors",
                                 code="invalid_adapter", field="model")
    meta_file = path / "tunery_metadata.json"
    if not meta_file.is_file():
        return AdapterInfo()
    try:
        meta = json.loads(meta_file.read_text())
    except ValueError as err:
        raise FailedPrecondition(f"{adapter.model_id}: {meta_file} is not JSON ({err})", code="invalid_adapter",
                                 field="model") from err
    if not isinstance(meta, dict):
        return AdapterInfo()
    return AdapterInfo(str(meta.get("base_model") or ""), str(meta.get("fine_tuned_model") or ""),
                       str(meta.get("job_id") or ""))


def check_trained_on(adapter: AdapterRef, trained_on: str, base: ServedBase) -> None:
    """An adapter whose metadata names another base model is refused (FailedPrecondition adapter_base_mismatch)."""
    if trained_on and trained_on not in (base.spec_name, base.id):
        raise FailedPrecondition(
            f"{adapter.model_id}: the adapter in {adapter.path} was trained on base model {trained_on!r}, not on "
            f"{base.id!r}", code="adapter_base_mismatch", field="model")


def context_error(prompt_tokens: int, max_tokens: int | None, context: int, field_name: str) -> InvalidArgument:
    asked = f" and max_tokens={max_tokens}" if max_tokens is not None else ""
    return InvalidArgument(
        f"this model's context is {context} tokens; the prompt has {prompt_tokens}{asked}, which leaves no room",
        code="context_length_exceeded", field=field_name)
