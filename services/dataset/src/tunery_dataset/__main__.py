"""`python -m tunery_dataset`: run the dataset service until SIGTERM."""

from __future__ import annotations

import asyncio
import logging

from tunery.runtime.server import run_until_signal
from tunery.runtime.telemetry import install_global
from tunery_dataset.app import start
from tunery_dataset.settings import DatasetSettings


async def main() -> None:
    settings = DatasetSettings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    install_global("tunery-dataset")  # spans of every call, joined to the caller's trace, exported per OTEL_*
    app = await start(settings)
    print(f"dataset service ready on {settings.host}:{app.port}", flush=True)
    await run_until_signal(app.server, app.close)


if __name__ == "__main__":
    asyncio.run(main())


def run() -> None:
    asyncio.run(main())
