"""Helpers for the gateway's tests and benchmarks: a real uvicorn server on its own thread, LoRA adapter folders
built on the spot, and a stand-in for text-generation-inference that speaks its HTTP API."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from tunery.runtime.natsd import free_port


class ServerThread:
    """uvicorn serving `app` on 127.0.0.1:<free port> in a background thread (lifespan included)."""

    def __init__(self, app: Any, port: int | None = None, *, grace: int = 5) -> None:
        self.app = app
        self.port = port or free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on",
                                timeout_graceful_shutdown=grace, access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name=f"uvicorn-{self.port}", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 180.0) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the server thread ended while starting (see the log above)")
            if time.monotonic() > deadline:
                raise TimeoutError(f"server on port {self.port} did not start within {timeout:.0f} s")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(60)


def make_adapter(base_dir: Path, out: Path, *, seed: int, base_model: str, fine_tuned_model: str = "",
                 job_id: str = "", rank: int = 4, target_modules: tuple[str, ...] = ("q_proj", "v_proj"),
                 std: float = 0.5) -> Path:
    """A PEFT LoRA folder with non-zero weights (so it changes outputs) and the trainer's tunery_metadata.json."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(base_dir))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        peft = get_peft_model(model, LoraConfig(r=rank, lora_alpha=4 * rank, target_modules=list(target_modules),
                                                init_lora_weights=False))
        for name, p in peft.named_parameters():
            if "lora_" in name:
                p.data.normal_(0, std)
    peft.save_pretrained(str(out))
    (out / "tunery_metadata.json").write_text(json.dumps(
        {"job_id": job_id, "fine_tuned_model": fine_tuned_model, "base_model": base_model, "backend": "test"}))
    return out


# ---- a text-generation-inference stand-in ---------------------------------------------------------------------------


def fake_tgi_app(max_total_tokens: int = 1024, token_delay: float = 0.0) -> Any:
    """TGI's HTTP surface as the gateway uses it: /info, /health, /v1/chat/completions and /v1/completions, streaming
    with `stream_options.include_usage`, 422 validation errors in TGI's shape. Answers "[<model>] w1 w2 ...", one
    word per token, so tests can see which adapter id a call selected. `app.state.calls` records request bodies and
    `app.state.cancelled` counts streams whose client left early; `app.state.token_delay` slows each token."""
    app = FastAPI()
    app.state.calls = []
    app.state.cancelled = 0
    app.state.token_delay = token_delay

    @app.get("/info")
    async def info() -> dict[str, Any]:
        return {"model_id": "fake/tgi", "max_total_tokens": max_total_tokens, "max_input_tokens": max_total_tokens - 1}

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {}

    async def generate(request: Request, chat: bool) -> Any:
        body = await request.json()
        app.state.calls.append(body)
        if chat:
            text_in = " ".join(str(m.get("content", "")) for m in body.get("messages", []))
        else:
            text_in = str(body.get("prompt", ""))
        prompt_tokens = len(text_in.split()) + 3
        max_tokens = body.get("max_tokens") or 20
        if prompt_tokens + max_tokens > max_total_tokens:
            return JSONResponse({"error": f"Input validation error: `inputs` tokens + `max_new_tokens` must be <= "
                                          f"{max_total_tokens}. Given: {prompt_tokens} `inputs` tokens and "
                                          f"{max_tokens} `max_new_tokens`", "error_type": "validation"}, 422)
        words = [f"[{body['model']}]"] + [f" w{i}" for i in range(1, max_tokens)]
        words = words[:max_tokens]
        finish = "length" if len(words) >= max_tokens else "stop"
        for s in body.get("stop") or []:
            for i, w in enumerate(words):
                if s in w:
                    words, finish = words[:i], "stop"
                    break
        kind = "chat.completion" if chat else "text_completion"
        if not body.get("stream"):
            text = "".join(words)
            choice = ({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
                      if chat else {"index": 0, "text": text, "finish_reason": finish})
            return {"id": "x", "object": kind, "created": 0, "model": body["model"], "choices": [choice],
                    "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(words),
                              "total_tokens": prompt_tokens + len(words)}}
        delay = float(app.state.token_delay)

        async def stream() -> Any:
            try:
                for i, w in enumerate(words):
                    last = i == len(words) - 1
                    choice = ({"index": 0, "delta": {"role": "assistant", "content": w}} if chat
                              else {"index": 0, "text": w})
                    choice["finish_reason"] = finish if last else None
                    yield f"data: {json.dumps({'object': kind + '.chunk', 'choices': [choice]})}\n\n"
                    await asyncio.sleep(delay)
                usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(words),
                         "total_tokens": prompt_tokens + len(words)}
                yield f"data: {json.dumps({'object': kind + '.chunk', 'choices': [], 'usage': usage})}\n\n"
                yield "data: [DONE]\n\n"
            except asyncio.CancelledError:
                app.state.cancelled += 1
                raise

        return StreamingResponse(stream(), media_type="text/event-stream")

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        return await generate(request, True)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Any:
        return await generate(request, False)

    return app
