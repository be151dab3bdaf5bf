"""What `tunery up` can start: the services (module, default port, env prefix, health probe) and trainer workers."""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tunery.errors import FailedPrecondition, InvalidArgument

HOST = "127.0.0.1"
DEFAULT_NATS_PORT = 4223


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """One deployable service: how to start it, where it listens by default, how to ask it whether it is healthy."""

    name: str
    module: str
    default_port: int
    env_prefix: str
    package: str
    health: Literal["grpc", "http"] = "grpc"

    @property
    def installed(self) -> bool:
        """Runnable as `python -m module`; checked without importing it (a trainer may pull in torch)."""
        try:
            found = importlib.util.find_spec(self.module)
        except (ImportError, ValueError):
            return False
        if found is None:
            return False
        locations = found.submodule_search_locations
        return locations is None or any((Path(loc) / "__main__.py").exists() for loc in locations)

    def env(self, field_name: str) -> str | None:
        return os.environ.get(f"{self.env_prefix}{field_name.upper()}") or None

    def port(self) -> int:
        raw = self.env("port")
        if raw is None:
            return self.default_port
        try:
            port = int(raw)
        except ValueError:
            port = -1
        if not 0 < port < 65536:
            raise InvalidArgument(f"{self.env_prefix}PORT must be a port number (1-65535), not {raw!r}",
                                  code="invalid_port", field=f"{self.env_prefix}PORT")
        return port


# Order matters: services start in this order and stop in reverse; later ones may call earlier ones.
SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("dataset", "tunery_dataset", 50051, "TUNERY_DATASET_", "tunery-dataset"),
    ServiceSpec("trainer", "tunery_trainer", 50052, "TUNERY_TRAINER_", "tunery-trainer"),
    ServiceSpec("evaluator", "tunery_evaluator", 50053, "TUNERY_EVALUATOR_", "tunery-evaluator"),
    ServiceSpec("gateway", "tunery_gateway", 8000, "TUNERY_GATEWAY_", "tunery-gateway", health="http"),
)
SPECS = {s.name: s for s in SERVICES}

WORKER = "trainer-worker"
"""`tunery serve trainer-worker`: a process that pulls training jobs from the NATS work queue; it serves no port."""
WORKER_MODULE = "tunery_trainer.worker"
WORKER_READY = re.compile(rb"^trainer worker \S+ ready$", re.MULTILINE)
"""The line a worker prints once it is subscribed to the queue (tunery_trainer.worker); its only health signal."""


def spec(name: str) -> ServiceSpec:
    if name not in SPECS:
        raise InvalidArgument(f"unknown service {name!r}; valid: {', '.join(SPECS)}", code="unknown_service",
                              field="service")
    return SPECS[name]


def serve_argv(name: str) -> list[str]:
    """The command `tunery serve` execs: the service's own module (or the trainer worker) under this interpreter."""
    if name == WORKER:
        if not SPECS["trainer"].installed:
            raise FailedPrecondition(f"trainer workers come with the trainer service: pip install "
                                     f"{SPECS['trainer'].package}", code="service_not_installed", field="service")
        return [sys.executable, "-m", WORKER_MODULE]
    s = spec(name)
    if not s.installed:
        raise FailedPrecondition(f"the {name} service is not installed: pip install {s.package}",
                                 code="service_not_installed", field="service")
    return [sys.executable, "-m", s.module]
