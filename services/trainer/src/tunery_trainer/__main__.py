"""`python -m tunery_trainer`: run the trainer service until SIGTERM (workers: `python -m tunery_trainer.worker`)."""

from __future__ import annotations

import asyncio
import logging

from tunery.runtime.server import run_until_signal
from tunery.runtime.telemetry import install_global
from tunery_trainer.app import start
from tunery_trainer.settings import TrainerSettings


async def main() -> None:
    settings = TrainerSettings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    install_global("tunery-trainer")  # spans of every call, joined to the caller's trace, exported per OTEL_*
    app = await start(settings)
    print(f"trainer service ready on {settings.host}:{app.port}", flush=True)
    await run_until_signal(app.server, app.close)


def run() -> None:
    asyncio.run(main())


if __name__ == "__main__":
    run()
