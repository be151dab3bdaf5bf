"""How the services `tunery up` starts find and trust each other beyond their addresses: the evaluator calls the
gateway's OpenAI-compatible API, with a key of the gateway's internal kind (inference scope) made once per data
directory and kept there (mode 0600), so a restarted `up` and the gateway agree on it without anyone typing it."""

from __future__ import annotations

import os
import secrets
from collections.abc import MutableMapping
from pathlib import Path

from tunery.up.catalog import HOST

KEY_FILE = Path("secrets") / "gateway_internal_api_key"


def internal_key(data_dir: Path) -> str:
    """The data directory's internal gateway key, made on first use."""
    path = data_dir / KEY_FILE
    if path.exists():
        key = path.read_text().strip()
        if key:
            return key
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = f"tny-internal-{secrets.token_urlsafe(32)}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return key


def wire(env: MutableMapping[str, str], started: set[str], data_dir: Path) -> None:
    """Point the evaluator at the dataset, trainer and gateway started with it. Settings the caller gave win."""
    if "evaluator" not in started:
        return
    for name in ("dataset", "trainer"):
        if name in started:
            env[f"TUNERY_EVALUATOR_{name.upper()}_ADDR"] = env[f"TUNERY_{name.upper()}_ADDR"]
    if "gateway" in started:
        env.setdefault("TUNERY_EVALUATOR_GATEWAY_URL", f"http://{HOST}:{env['TUNERY_GATEWAY_PORT']}/v1")
        if not env.get("TUNERY_GATEWAY_INTERNAL_API_KEY"):
            env["TUNERY_GATEWAY_INTERNAL_API_KEY"] = internal_key(data_dir)
        env.setdefault("TUNERY_EVALUATOR_GATEWAY_API_KEY", env["TUNERY_GATEWAY_INTERNAL_API_KEY"])
