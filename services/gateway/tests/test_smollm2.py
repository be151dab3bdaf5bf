"""The real SmolLM2-135M-Instruct (the packaged GGUF, converted once by tunery.weights.base_model_folder): its own
chat template, a sensible answer, streaming, through the official client. Set TUNERY_TEST_DATA_DIR to keep the
converted model between runs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import openai
import pytest


@pytest.mark.smollm2
def test_smollm2_answers(gw: Any, extra_gateway: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    from tunery.models import resolve
    from tunery.weights import base_model_folder

    data_dir = Path(os.environ.get("TUNERY_TEST_DATA_DIR") or tmp_path_factory.mktemp("smollm2"))
    base_model_folder(resolve("smollm2-135m-instruct"), data_dir)
    server, _ = extra_gateway("gw-smollm2", data_dir=data_dir, base_models="smollm2-135m-instruct",
                                  listen_job_events=False)
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=gw.admin_key, max_retries=0, timeout=300)
    assert [m.id for m in client.models.list()] == ["smollm2-135m-instruct"]
    assert client.models.retrieve("smollm2-135m-instruct").model_dump()["max_model_len"] == 8192
    messages: Any = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
    r = client.chat.completions.create(model="smollm2-135m-instruct", messages=messages, max_tokens=8, temperature=0)
    answer = r.choices[0].message.content or ""
    assert "Paris" in answer, answer
    assert "<|im_end|>" not in answer and r.choices[0].finish_reason == "stop"  # its template's end token stops it
    stream: Any = client.chat.completions.create(model="smollm2-135m-instruct", messages=messages, max_tokens=8,
                                                 temperature=0, stream=True)
    streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert streamed == answer
