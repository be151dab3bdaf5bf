"""`python -m tunery_gateway`: serve HTTP on TUNERY_GATEWAY_HOST:PORT (127.0.0.1:8000) until SIGTERM.

On SIGTERM the gateway first answers /health with 503 for TUNERY_GATEWAY_DRAIN_DELAY_SECONDS (balancers move
away), then stops accepting connections and lets in-flight calls, streams included, finish within
TUNERY_GATEWAY_GRACE_SECONDS, then stops the engine and flushes the request logs; it exits 0.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
from types import FrameType

import uvicorn

from tunery_gateway.app import create_app
from tunery_gateway.settings import GatewaySettings

log = logging.getLogger("tunery.gateway")


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, drain_delay: float, ready_line: str = "") -> None:
        super().__init__(config)
        self.drain_delay = drain_delay
        self.draining = False
        self.ready_line = ready_line

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.ready_line and not self.should_exit:
            print(self.ready_line, flush=True)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.draining:  # a second signal: stop now
            self.force_exit = sig == signal.SIGINT
            self.should_exit = True
            return
        self.draining = True
        gw = getattr(getattr(self.config.app, "state", None), "gateway", None)
        if gw is not None:
            gw.draining = True
        log.info("signal %d: draining (health answers 503 for %.1f s, then in-flight calls get %.0f s)", sig,
                 self.drain_delay, self.config.timeout_graceful_shutdown or 0)
        threading.Timer(self.drain_delay, lambda: setattr(self, "should_exit", True)).start()


def serve(settings: GatewaySettings) -> None:
    app = create_app(settings)
    config = uvicorn.Config(app, host=settings.host, port=settings.bind_port, log_level=settings.log_level.lower(),
                            timeout_graceful_shutdown=int(settings.grace_seconds) or None, access_log=False,
                            server_header=False, lifespan="on")
    DrainingServer(config, settings.drain_delay_seconds, ready_line=f"gateway ready on http://{settings.host}:"
                   f"{settings.bind_port}").run()


def run() -> None:
    settings = GatewaySettings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve(settings)


if __name__ == "__main__":
    run()
