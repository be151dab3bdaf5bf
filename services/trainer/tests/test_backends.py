"""Training backends on a tiny random Llama (SmolLM2's tokenizer and chat template): labels, packing, the training
loop contract (checkpoints, resume, cancel, pause) for `peft` and `trl`, DPO, and one short run of the real SmolLM2."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from tunery.chatformat import IGNORE_INDEX, encode_example
from tunery_trainer.backends.base import (
    CheckpointInfo,
    Control,
    LoraSpec,
    StepMetrics,
    TrainingContext,
    TrainingResult,
    TrainSpec,
    ValidationMetrics,
)
from tunery_trainer.backends.peft import PeftBackend, PeftBackendConfig
from tunery_trainer.backends.peft.attention import SEGMENTED_ATTENTION, register_attention, segment_bounds
from tunery_trainer.backends.peft.loss import head_loss
from tunery_trainer.backends.trl import TrlBackend, TrlBackendConfig
from tunery_trainer.data import collate_padding_free, encode_sft, preference_rows, shuffled_batches


@dataclass
class RecordingReporter:
    """Records every event; `actions` maps a step to what control() answers after it."""

    actions: dict[int, Control] = field(default_factory=dict)
    starts: list[tuple[int, int]] = field(default_factory=list)
    steps: list[StepMetrics] = field(default_factory=list)
    checkpoints: list[CheckpointInfo] = field(default_factory=list)
    validations: list[ValidationMetrics] = field(default_factory=list)
    controls: int = 0

    def on_start(self, total_steps: int, start_step: int) -> None:
        self.starts.append((total_steps, start_step))

    def on_step(self, m: StepMetrics) -> None:
        self.steps.append(m)

    def on_checkpoint(self, c: CheckpointInfo) -> None:
        self.checkpoints.append(c)

    def on_validation(self, v: ValidationMetrics) -> None:
        self.validations.append(v)

    def control(self) -> Control:
        self.controls += 1
        last = self.steps[-1].step if self.steps else 0
        return self.actions.get(last, "continue")

    @property
    def losses(self) -> list[float]:
        return [s.loss for s in self.steps]


SPEC = TrainSpec(n_epochs=2, batch_size=4, learning_rate=1e-2, max_seq_length=256, checkpoint_every_steps=4, seed=3)
FAST = PeftBackendConfig(num_threads=1)


def trained_text(tok: Any, ex: dict[str, Any]) -> str:
    t = encode_example(tok, ex)
    return str(tok.decode([i for i, lab in zip(t.input_ids, t.labels, strict=True) if lab != IGNORE_INDEX]))


def run(
    backend: Any,
    model: Path,
    examples: list[dict[str, Any]],
    out: Path,
    spec: TrainSpec = SPEC,
    config: Any = None,
    valid: list[dict[str, Any]] | None = None,
    resume: Path | None = None,
    actions: dict[int, Any] | None = None,
) -> tuple[TrainingResult, RecordingReporter]:
    rep = RecordingReporter(actions=actions or {})
    ctx = TrainingContext(
        job_id="job-1",
        model_dir=model,
        train_examples=examples,
        validation_examples=valid or [],
        spec=spec,
        output_dir=out,
        reporter=rep,
        resume_from=resume,
        metadata={"base_model": "tiny"},
    )
    return backend.train(ctx, config), rep


def assert_loss_falls(losses: list[float]) -> None:
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < first - 0.1, losses


# ---- data ----


def test_labels_cover_assistant_turns_through_end_of_turn_only(tiny_model: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    chat: dict[str, Any] = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello there", "weight": 0},
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "4"},
            {"role": "user", "content": "and 3+3?"},
            {"role": "assistant", "content": "6"},
        ]
    }
    assert trained_text(tok, chat) == "4<|im_end|>6<|im_end|>"  # not "hello there", not the "\n" after <|im_end|>
    t = encode_example(tok, chat)
    rendered: Any = tok.apply_chat_template(chat["messages"], tokenize=True, return_dict=True)
    assert t.input_ids == rendered["input_ids"]
    # legacy prompt/completion: the completion and an appended EOS
    assert trained_text(tok, {"prompt": "Q: 2+2? A:", "completion": " 4"}) == " 4<|im_end|>"
    # preference examples train their preferred output when used for SFT
    pref = {
        "input": {"messages": [{"role": "user", "content": "yes or no?"}]},
        "preferred_output": [{"role": "assistant", "content": "yes"}],
        "non_preferred_output": [{"role": "assistant", "content": "no"}],
    }
    assert trained_text(tok, pref) == "yes<|im_end|>"
    assert preference_rows([pref], tok)[0]["rejected"] == [{"role": "assistant", "content": "no"}]
    # tool calls are trained even though SmolLM2's template ignores them; tool definitions reach the prompt
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    call = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    ex = {
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
            {"role": "assistant", "content": "Sunny."},
        ],
        "tools": tools,
    }
    text = trained_text(tok, ex)
    assert '"name": "get_weather"' in text and '"city": "Paris"' in text and text.endswith("Sunny.<|im_end|>")
    assert "get_weather" in tok.decode(encode_example(tok, ex).input_ids[:60])  # the tools are in the system turn
    # truncation is counted; an example whose answer is cut off entirely is dropped
    long = {"messages": [{"role": "user", "content": "word " * 300}, {"role": "assistant", "content": "ok"}]}
    enc = encode_sft(tok, [chat, long], max_seq_length=64)
    assert (enc.truncated, enc.dropped, len(enc.examples)) == (1, 1, 1)


def test_padding_free_rows_give_the_same_logits_as_separate_examples(tiny_model: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    msgs = [
        [{"role": "user", "content": "What is the capital of France?"}, {"role": "assistant", "content": "Paris."}],
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello! How can I help you today?"}],
    ]
    items = [encode_example(tok, {"messages": m}) for m in msgs]
    batch = collate_padding_free(items)
    assert batch["position_ids"][0].tolist() == [*range(len(items[0].input_ids)), *range(len(items[1].input_ids))]
    register_attention()
    for attn in ("sdpa", "eager", SEGMENTED_ATTENTION):
        model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32, attn_implementation=attn).eval()
        kw = {"tunery_segments": segment_bounds(batch["position_ids"])} if attn == SEGMENTED_ATTENTION else {}
        with torch.no_grad():
            packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False, **kw)
            alone = [model(input_ids=torch.tensor([t.input_ids]), use_cache=False).logits[0] for t in items]
        torch.testing.assert_close(packed.logits[0], torch.cat(alone), atol=1e-5, rtol=1e-4, msg=attn)


def test_chunked_frozen_head_loss_matches_autograd() -> None:
    torch.manual_seed(0)
    hidden = torch.randn(300, 64, requires_grad=True)
    weight, targets = torch.randn(5000, 64) * 0.1, torch.randint(0, 5000, (300,))
    loss, correct = head_loss(hidden, weight, targets, chunk=64)
    (loss * 0.5).backward()
    ours, hidden.grad = hidden.grad, None
    logits = hidden @ weight.T
    want = torch.nn.functional.cross_entropy(logits, targets, reduction="sum")
    (want * 0.5).backward()
    torch.testing.assert_close(loss, want)
    torch.testing.assert_close(ours, hidden.grad)
    assert int(correct) == int((logits.argmax(-1) == targets).sum())
    with torch.no_grad():
        torch.testing.assert_close(head_loss(hidden, weight, targets, chunk=64)[0], want)


def test_shuffles_are_deterministic_and_length_grouping_groups() -> None:
    lengths = [5, 100, 7, 90, 6, 95, 8, 99]
    assert shuffled_batches(lengths, 2, seed=1) == shuffled_batches(lengths, 2, seed=1)
    assert shuffled_batches(lengths, 2, seed=1) != shuffled_batches(lengths, 2, seed=2)
    grouped = shuffled_batches(lengths, 2, seed=1, group_by_length=True)
    assert sorted(i for b in grouped for i in b) == list(range(8))
    assert all((lengths[a] > 50) == (lengths[b] > 50) for a, b in grouped)


# ---- peft backend ----


@pytest.fixture(scope="module")
def peft_full(
    tiny_model: Path, chat_examples: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> tuple[TrainingResult, RecordingReporter, Path]:
    out = tmp_path_factory.mktemp("peft-full")
    r, rep = run(PeftBackend(), tiny_model, chat_examples, out, config=FAST, valid=chat_examples[:4])
    return r, rep, out


def test_peft_trains_checkpoints_and_writes_the_adapter(
    peft_full: tuple[TrainingResult, RecordingReporter, Path],
) -> None:
    r, rep, out = peft_full
    assert (r.outcome, r.steps, r.total_steps) == ("completed", 12, 12)  # ceil(24 / 4) * 2 epochs
    assert [s.step for s in rep.steps] == list(range(1, 13)) and rep.starts == [(12, 0)]
    assert_loss_falls(rep.losses)
    assert all(s.tokens > 0 and s.tokens_per_second > 0 for s in rep.steps)
    assert [c.step for c in rep.checkpoints] == [4, 6, 8, 12]  # every 4 steps and at each epoch end
    assert [v.step for v in rep.validations] == [6, 12]
    assert r.metrics["valid_loss"] == rep.validations[-1].loss and 0 <= r.metrics["valid_token_accuracy"] <= 1
    ckpts = sorted((out / "checkpoints").iterdir())
    assert [p.name for p in ckpts] == ["step-000004", "step-000006", "step-000008", "step-000012"]
    for p in ckpts:
        names = {f.name for f in p.iterdir()}
        assert {"adapter_model.safetensors", "adapter_config.json", "optimizer.safetensors", "rng.safetensors"} <= names
        assert not [n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl", ".pickle"))], names
    assert r.adapter_dir == out / "adapter"
    meta = json.loads((r.adapter_dir / "tunery_metadata.json").read_text())
    assert meta["base_model"] == "tiny" and meta["hyperparameters"]["n_epochs"] == 2 and "valid_loss" in meta["metrics"]
    assert (r.adapter_dir / "adapter_model.safetensors").exists() and (r.adapter_dir / "adapter_config.json").exists()
    assert r.trained_tokens == sum(s.tokens for s in rep.steps)


def test_peft_resume_continues_the_same_run_bit_for_bit(
    tiny_model: Path,
    chat_examples: list[dict[str, Any]],
    peft_full: tuple[TrainingResult, RecordingReporter, Path],
    tmp_path: Path,
) -> None:
    full, full_rep, out = peft_full
    r, rep = run(
        PeftBackend(),
        tiny_model,
        chat_examples,
        tmp_path,
        config=FAST,
        valid=chat_examples[:4],
        resume=out / "checkpoints" / "step-000004",
    )
    assert rep.starts == [(12, 4)] and [s.step for s in rep.steps] == list(range(5, 13))
    assert (r.outcome, r.steps, r.total_steps) == ("completed", 12, 12)
    assert [s.loss for s in rep.steps] == pytest.approx([s.loss for s in full_rep.steps[4:]], abs=1e-6)
    assert r.trained_tokens == full.trained_tokens
    a = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0)


def test_peft_cancel_stops_at_once_and_keeps_checkpoints(
    tiny_model: Path, chat_examples: list[dict[str, Any]], tmp_path: Path
) -> None:
    r, rep = run(PeftBackend(), tiny_model, chat_examples, tmp_path, config=FAST, actions={5: "cancel"})
    assert (r.outcome, r.steps, r.adapter_dir) == ("cancelled", 5, None)
    assert rep.steps[-1].step == 5 and [c.step for c in rep.checkpoints] == [4]
    assert (tmp_path / "checkpoints" / "step-000004" / "adapter_model.safetensors").exists()
    assert not (tmp_path / "adapter").exists()


def test_peft_pause_writes_a_checkpoint_to_resume_from(
    tiny_model: Path, chat_examples: list[dict[str, Any]], tmp_path: Path
) -> None:
    r, rep = run(PeftBackend(), tiny_model, chat_examples, tmp_path, config=FAST, actions={3: "pause"})
    assert (r.outcome, r.steps) == ("paused", 3) and [c.step for c in rep.checkpoints] == [3]
    r2, rep2 = run(
        PeftBackend(),
        tiny_model,
        chat_examples,
        tmp_path,
        config=FAST,
        resume=tmp_path / "checkpoints" / "step-000003",
    )
    assert rep2.steps[0].step == 4 and (r2.outcome, r2.steps) == ("completed", 12)


def test_peft_padded_path_with_accumulation(
    tiny_model: Path, chat_examples: list[dict[str, Any]], tmp_path: Path
) -> None:
    spec = TrainSpec(
        n_epochs=1, batch_size=2, gradient_accumulation_steps=2, learning_rate=1e-2, max_seq_length=256, seed=1
    )
    r, rep = run(PeftBackend(), tiny_model, chat_examples, tmp_path, spec, PeftBackendConfig(padding_free=False))
    assert (r.outcome, r.total_steps) == ("completed", 6)  # ceil(24 / 2 / 2)
    assert_loss_falls(rep.losses)


def test_peft_bfloat16_base_weights_keep_float32_lora(
    tiny_model: Path, chat_examples: list[dict[str, Any]], tmp_path: Path
) -> None:
    """Half-size frozen weights (what large models on GPUs use): training works, the adapter stays float32."""
    spec = TrainSpec(n_epochs=1, batch_size=4, learning_rate=1e-2, max_seq_length=256, seed=3)
    r, rep = run(PeftBackend(), tiny_model, chat_examples, tmp_path, spec, PeftBackendConfig(base_dtype="bfloat16"))
    assert (r.outcome, r.steps) == ("completed", 6)
    assert_loss_falls(rep.losses)
    assert r.adapter_dir is not None
    adapter = load_file(str(r.adapter_dir / "adapter_model.safetensors"))
    assert adapter and {t.dtype for t in adapter.values()} == {torch.float32}


def test_peft_turns_on_checkpointing_when_the_longest_example_would_not_fit(
    tiny_model: Path, chat_examples: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An example cannot be split across passes; with too little memory for its activations they are recomputed,
    and the training is the same."""
    import psutil

    spec = TrainSpec(n_epochs=1, batch_size=4, learning_rate=1e-2, max_seq_length=256, seed=4, lora=LoraSpec(dropout=0))
    _, plenty = run(PeftBackend(), tiny_model, chat_examples, tmp_path / "a", spec, FAST)
    real = psutil.virtual_memory()
    monkeypatch.setattr(psutil, "virtual_memory", lambda: real._replace(available=1 << 20))  # 1 MiB "free"
    r, scarce = run(PeftBackend(), tiny_model, chat_examples, tmp_path / "b", spec, FAST)
    assert r.adapter_dir is not None
    meta = json.loads((r.adapter_dir / "tunery_metadata.json").read_text())
    assert meta["backend_config"]["grad_checkpointing"] is True, "switched on, and recorded"
    first = json.loads((tmp_path / "a" / "adapter" / "tunery_metadata.json").read_text())
    assert first["backend_config"]["grad_checkpointing"] is False
    assert scarce.losses == pytest.approx(plenty.losses, rel=1e-5)


def test_peft_token_budget_splits_batches_without_changing_the_result(
    tiny_model: Path, chat_examples: list[dict[str, Any]], tmp_path: Path
) -> None:
    spec = TrainSpec(n_epochs=1, batch_size=6, learning_rate=1e-2, max_seq_length=256, seed=2, lora=LoraSpec(dropout=0))
    _, rep_whole = run(PeftBackend(), tiny_model, chat_examples, tmp_path / "a", spec, FAST)
    cfg = PeftBackendConfig(num_threads=1, max_tokens_per_forward=100)  # one or two examples per pass
    _, rep_split = run(PeftBackend(), tiny_model, chat_examples, tmp_path / "b", spec, cfg)
    assert rep_split.losses == pytest.approx(rep_whole.losses, rel=1e-5)
    a = load_file(str(tmp_path / "a" / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "b" / "adapter" / "adapter_model.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-4)


# ---- trl backend ----

TRL_FAST = TrlBackendConfig(extra_args={"gradient_checkpointing": False})
TRL_SPEC = TrainSpec(n_epochs=2, batch_size=4, learning_rate=1e-2, max_seq_length=256, checkpoint_every_steps=2, seed=3)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny matrices: one torch thread avoids OpenMP hand-offs, which cost a lot on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trl_full(
    tiny_model: Path, chat_examples: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> tuple[TrainingResult, RecordingReporter, Path]:
    out = tmp_path_factory.mktemp("trl-full")
    r, rep = run(TrlBackend(), tiny_model, chat_examples[:12], out, TRL_SPEC, TRL_FAST, valid=chat_examples[:4])
    return r, rep, out


def test_trl_trains_checkpoints_and_resumes(
    tiny_model: Path,
    chat_examples: list[dict[str, Any]],
    trl_full: tuple[TrainingResult, RecordingReporter, Path],
    tmp_path: Path,
) -> None:
    r, rep, out = trl_full
    assert (r.outcome, r.steps, r.total_steps) == ("completed", 6, 6)
    assert [s.step for s in rep.steps] == list(range(1, 7))
    assert_loss_falls(rep.losses)
    assert [c.step for c in rep.checkpoints] == [2, 3, 4, 6]  # every 2 steps and at each epoch end
    assert [v.step for v in rep.validations] == [3, 6] and "valid_loss" in r.metrics
    for c in rep.checkpoints:
        assert c.path.name == f"step-{c.step:06d}" and (c.path / "adapter_model.safetensors").exists()
        names = {f.name for f in c.path.iterdir()}
        assert {"optimizer.safetensors", "scheduler.json", "rng_state_0.safetensors", "training_args.json"} <= names
        assert not [n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl", ".pickle"))], names
    assert r.adapter_dir is not None and (r.adapter_dir / "tunery_metadata.json").exists()

    r2, rep2 = run(
        TrlBackend(),
        tiny_model,
        chat_examples[:12],
        tmp_path,
        TRL_SPEC,
        TRL_FAST,
        resume=out / "checkpoints" / "step-000004",
    )
    assert rep2.starts == [(6, 4)] and [s.step for s in rep2.steps] == [5, 6]
    assert (r2.outcome, r2.steps, r2.total_steps) == ("completed", 6, 6)
    # optimizer, scheduler and RNG came back from the safetensors/JSON files: the same steps 5-6 as the full run
    assert [s.loss for s in rep2.steps] == pytest.approx(rep.losses[4:6], rel=1e-4)
    assert [s.learning_rate for s in rep2.steps] == pytest.approx([s.learning_rate for s in rep.steps[4:6]])


def test_trl_cancel_and_pause(tiny_model: Path, chat_examples: list[dict[str, Any]], tmp_path: Path) -> None:
    spec = TrainSpec(n_epochs=1, batch_size=2, learning_rate=1e-2, max_seq_length=256, checkpoint_every_steps=2)
    data = chat_examples[:12]
    padding_free = TrlBackendConfig(padding_free=True, extra_args={"gradient_checkpointing": False})
    r, rep = run(TrlBackend(), tiny_model, data, tmp_path / "c", spec, padding_free, actions={3: "cancel"})
    assert (r.outcome, r.steps, r.adapter_dir) == ("cancelled", 3, None)
    assert [c.step for c in rep.checkpoints] == [2]
    r, rep = run(TrlBackend(), tiny_model, data, tmp_path / "p", spec, TRL_FAST, actions={3: "pause"})
    assert (r.outcome, r.steps) == ("paused", 3) and [c.step for c in rep.checkpoints] == [2, 3]
    assert (tmp_path / "p" / "checkpoints" / "step-000003" / "adapter_model.safetensors").exists()


def test_trl_dpo_runs_on_preference_examples(tiny_model: Path, tmp_path: Path) -> None:
    prefs = [
        {
            "input": {"messages": [{"role": "user", "content": f"Is {i} even? Answer yes or no."}]},
            "preferred_output": [{"role": "assistant", "content": "yes" if i % 2 == 0 else "no"}],
            "non_preferred_output": [{"role": "assistant", "content": "no" if i % 2 == 0 else "yes"}],
        }
        for i in range(8)
    ]
    spec = TrainSpec(method="dpo", n_epochs=1, batch_size=4, learning_rate=1e-3, max_seq_length=128)
    r, rep = run(TrlBackend(), tiny_model, prefs, tmp_path, spec, TRL_FAST, valid=prefs[:4])
    assert (r.outcome, r.steps) == ("completed", 2) and len(rep.steps) == 2
    assert r.adapter_dir is not None and (r.adapter_dir / "adapter_model.safetensors").exists()
    assert rep.validations and rep.checkpoints[-1].step == 2


def test_configs_reject_bad_values() -> None:
    with pytest.raises(ValueError, match="lr_scheduler"):
        PeftBackendConfig(lr_scheduler="sometimes")
    with pytest.raises(ValueError, match="base_dtype"):
        PeftBackendConfig(base_dtype="float8")
    with pytest.raises(ValueError, match="may not set"):
        TrlBackendConfig(extra_args={"learning_rate": 1.0})
    with pytest.raises(ValueError, match="neither"):
        TrlBackendConfig(extra_args={"turbo": True})
    assert PeftBackend.methods == ("sft",) and set(TrlBackend.methods) == {"sft", "dpo"}


# ---- the real model ----


@pytest.mark.smollm2
def test_smollm2_three_steps(chat_examples: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> None:
    """The packaged GGUF, converted once into a plain folder, trains with the peft backend (3 steps)."""
    import os
    import tempfile

    from tunery.models import resolve
    from tunery.weights import base_model_folder as prepare_base_model

    # Shared across runs (the conversion takes a minute; it is atomic and locked, so sharing is safe).
    data_dir = Path(os.environ.get("TUNERY_TEST_DATA_DIR") or Path(tempfile.gettempdir()) / "tunery-test-data")
    model_dir = prepare_base_model(resolve("smollm2-135m-instruct"), data_dir)
    assert prepare_base_model(resolve("smollm2-135m-instruct"), data_dir) == model_dir  # converted once
    assert (model_dir / "model.safetensors").exists() and "quantization_config" not in json.loads(
        (model_dir / "config.json").read_text()
    )
    spec = TrainSpec(n_epochs=1, batch_size=4, learning_rate=1e-3, max_seq_length=256, lora=LoraSpec(rank=8))
    r, rep = run(PeftBackend(), model_dir, chat_examples[:12], tmp_path_factory.mktemp("out"), spec)
    assert (r.outcome, r.steps) == ("completed", 3)
    assert all(s.loss < 5 for s in rep.steps), rep.losses  # a real instruct model, not a random one
