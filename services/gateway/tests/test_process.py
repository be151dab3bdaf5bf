"""`python -m tunery_gateway` as `tunery up` and deployments run it: env settings, /health, SIGTERM drain."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import httpx

from tunery.runtime.natsd import free_port
from tunery.testing import wait_exit


def test_serves_and_drains_on_sigterm(gw: Any, tmp_path: Any) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TUNERY_", "OTEL_"))}
    env.update(TUNERY_DATA_DIR=str(tmp_path), TUNERY_NATS_URL=gw.nats_url, TUNERY_GATEWAY_PORT=str(port),
               TUNERY_GATEWAY_BASE_MODELS=str(gw.shared.tiny), TUNERY_GATEWAY_ADMIN_API_KEY=gw.admin_key,
               TUNERY_GATEWAY_DRAIN_DELAY_SECONDS="2", TUNERY_GATEWAY_GRACE_SECONDS="20",
               TUNERY_GATEWAY_TORCH_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "tunery_gateway"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()  # type: ignore
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {gw.admin_key}"}
    try:
        deadline = time.monotonic() + 120
        while not any("gateway ready on" in line for line in lines):
            assert proc.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "".join(lines)
            time.sleep(0.1)
        health = httpx.get(f"{url}/health").json()
        assert health["status"] == "ok" and health["auth"] == "api_keys" and health["base_models"] == [gw.base]

        chunks: list[str] = []

        def stream() -> None:
            body = {"model": gw.base, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 400,
                    "stream": True, "temperature": 1.0, "seed": 3}
            with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, headers=headers, timeout=60) as r:
                for line in r.iter_lines():
                    chunks.append(line)

        t = threading.Thread(target=stream)
        t.start()
        while not chunks:  # the call is in flight
            assert t.is_alive() or chunks, "the stream ended before its first chunk"
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        # The gateway logs that it drains once /health says so; it then answers 503 for the drain delay (2 s).
        while not any("draining" in line for line in lines):
            assert proc.poll() is None, "".join(lines)
            time.sleep(0.01)
        drained = httpx.get(f"{url}/health")
        assert drained.status_code == 503 and drained.json()["status"] == "draining"
        t.join(60)
        assert [c for c in chunks if c][-1] == "data: [DONE]"  # the call in flight was allowed to finish
        assert wait_exit(proc, "the draining gateway") == 0
        assert "TUNERY_GATEWAY_ADMIN_API_KEY=" not in "".join(lines) and gw.admin_key not in "".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
