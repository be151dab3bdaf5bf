"""`python -m tunery_evaluator`: serve gRPC and run queued evaluations until SIGTERM."""

from __future__ import annotations

import asyncio
import logging

from tunery.runtime.server import run_until_signal
from tunery.runtime.telemetry import install_global
from tunery_evaluator.app import start
from tunery_evaluator.settings import EvaluatorSettings


async def main() -> None:
    settings = EvaluatorSettings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    install_global("tunery-evaluator")  # spans of every call, joined to the caller's trace, exported per OTEL_*
    app = await start(settings)
    print(f"evaluator service ready on {settings.host}:{app.port}", flush=True)
    await run_until_signal(app.server, app.close)


def run() -> None:
    asyncio.run(main())


if __name__ == "__main__":
    run()
