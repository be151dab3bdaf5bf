"""POST /v1/score: the loss of a reference answer under a base model and its adapter, equal to a direct transformers
forward on the trainer's tokenization of the same example, and harmless to generation running at the same time."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tunery.chatformat import encode_example
from tunery_gateway.keys import KeyStore
from tunery_gateway.testing import make_adapter

MESSAGES = [{"role": "system", "content": "You answer support tickets."},
            {"role": "user", "content": "My invoice is wrong, please fix it."}]
REFERENCE = "Sorry about that! I have corrected the invoice and sent you a new copy."


def score(gw: Any, model: str, messages: list[dict[str, Any]] = MESSAGES, reference: str = REFERENCE) -> Any:
    """Through the official openai client's low-level request (the route is a Tunery extension)."""
    return gw.client().post("/score", body={"model": model, "messages": messages, "reference": reference},
                            cast_to=object)


@pytest.fixture(scope="module")
def tuned(gw: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    folder = make_adapter(gw.shared.tiny, tmp_path_factory.mktemp("score") / "adapter", seed=11,
                          base_model=str(gw.shared.tiny.resolve()))
    model = f"ft:{gw.base}:score:ftjob-score1"
    r = gw.http("POST", "/v1/models", json={"id": model, "adapter_path": str(folder)})
    assert r.status_code == 201, r.text
    return model, folder


def direct_loss(gw: Any, adapter: Path | None) -> tuple[float, int]:
    """HF's own causal-LM loss on the trainer's token ids and labels of the same example."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(gw.shared.tiny))
    example = encode_example(tok, {"messages": [*MESSAGES, {"role": "assistant", "content": REFERENCE}]})
    model: Any = AutoModelForCausalLM.from_pretrained(str(gw.shared.tiny))
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter))
    model.eval()
    with torch.inference_mode():
        out = model(input_ids=torch.tensor([example.input_ids]), labels=torch.tensor([example.labels]))
    return float(out.loss), example.n_trained


def test_score_equals_the_trainers_loss_for_base_and_adapter(gw: Any, tuned: tuple[str, Path]) -> None:
    model, folder = tuned
    base = score(gw, gw.base)
    ft = score(gw, model)
    assert base["object"] == "score" and base["model"] == gw.base and ft["model"] == model
    want_base, n = direct_loss(gw, None)
    want_ft, _ = direct_loss(gw, folder)
    assert base["tokens"] == ft["tokens"] == n  # the reference through its end-of-turn token
    assert base["loss"] == pytest.approx(want_base, rel=1e-4)
    assert ft["loss"] == pytest.approx(want_ft, rel=1e-4)
    assert abs(ft["loss"] - base["loss"]) > 1e-3  # the adapter changes the loss
    assert base["perplexity"] == pytest.approx(math.exp(base["loss"]))
    assert 0 <= base["token_accuracy"] <= 1
    assert base["usage"]["prompt_tokens"] > base["tokens"]
    assert score(gw, gw.base) == base  # deterministic


def test_scoring_between_decode_steps_leaves_generation_alone(gw: Any, tuned: tuple[str, Path]) -> None:
    """Generation with the base and the adapter while both are scored: every answer and every loss is the one it
    is when it runs alone (the adapter switches for a scoring forward must not leak into the batch)."""
    model, _ = tuned
    worker = gw.gateway.engine.workers[gw.base]

    def greedy(name: str) -> str:
        r = gw.client().chat.completions.create(model=name, messages=MESSAGES, max_tokens=24, temperature=0)
        return r.choices[0].message.content or ""

    alone = {("chat", m): greedy(m) for m in (gw.base, model)} | {("score", m): score(gw, m)["loss"]
                                                                 for m in (gw.base, model)}
    scored = worker.counters["scores"]
    jobs = [("chat", gw.base), ("score", model), ("chat", model), ("score", gw.base)] * 3
    with ThreadPoolExecutor(6) as pool:
        together = list(pool.map(lambda j: (j, greedy(j[1]) if j[0] == "chat" else score(gw, j[1])["loss"]), jobs))
    assert all(value == alone[job] for job, value in together)
    assert worker.counters["scores"] == scored + 6


def test_score_errors(gw: Any) -> None:
    r = gw.http("POST", "/v1/score", json={"model": "no-such-model", "messages": MESSAGES, "reference": "x"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    r = gw.http("POST", "/v1/score", json={"model": gw.base, "messages": MESSAGES, "reference": ""})
    assert r.status_code == 400 and r.json()["error"]["param"] == "reference"
    r = gw.http("POST", "/v1/score", json={"model": gw.base, "messages": [], "reference": "x"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"
    r = gw.http("POST", "/v1/score", json={"model": gw.base, "messages": MESSAGES, "reference": "x"}, key=None)
    assert r.status_code == 401
    store = KeyStore(gw.gateway.db_engine)
    _, inference = store.create("score-inference", "inference")
    _, fine_tune = store.create("score-fine-tune", "fine-tune")
    r = gw.http("POST", "/v1/score", key=inference, json={"model": gw.base, "messages": MESSAGES, "reference": "x"})
    assert r.status_code == 200 and r.json()["tokens"] > 0
    r = gw.http("POST", "/v1/score", key=fine_tune, json={"model": gw.base, "messages": MESSAGES, "reference": "x"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "insufficient_scope"
    long = " ".join(["word"] * (gw.gateway.engine.workers[gw.base].base.context_length + 10))
    r = gw.http("POST", "/v1/score", json={"model": gw.base, "messages": MESSAGES, "reference": long})
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
    assert r.json()["error"]["param"] == "reference"
