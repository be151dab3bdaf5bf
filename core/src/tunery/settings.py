"""Process settings: one validated object per service, read from `TUNERY_<SERVICE>_<FIELD>`.

Fields every service shares (data directory, NATS, database) also fall back to `TUNERY_<FIELD>`, so one
`TUNERY_NATS_URL` configures a whole deployment while a single service can still be pointed elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_data_dir() -> Path:
    return Path(os.environ.get("TUNERY_DATA_DIR", "~/.tunery")).expanduser()


class ServiceSettings(BaseSettings):
    """Settings common to every gRPC service; subclasses set `service` and their env prefix."""

    model_config = SettingsConfigDict(env_prefix="TUNERY_", extra="ignore", validate_default=True)

    service: ClassVar[str] = ""
    default_port: ClassVar[int] = 0
    shared_fields: ClassVar[tuple[str, ...]] = ("data_dir", "nats_url", "database_url", "host", "log_level")

    data_dir: Path = Field(default_factory=default_data_dir, description="Where state and artifacts live.")
    host: str = Field("127.0.0.1", description="Interface the gRPC server binds.")
    port: int = Field(0, ge=0, le=65535, description="gRPC port; 0 picks the service's default.")
    nats_url: str = Field("nats://127.0.0.1:4222", description="NATS server with JetStream.")
    database_url: str = Field("", description="SQLAlchemy URL; empty means SQLite in the data directory.")
    log_level: str = Field("INFO", description="Python logging level.")
    grace_seconds: float = Field(10.0, ge=0, description="How long SIGTERM waits for in-flight calls.")
    drain_delay_seconds: float = Field(
        0.0, ge=0, description="After SIGTERM, answer health as NOT_SERVING this long before refusing new calls."
    )

    @model_validator(mode="before")
    @classmethod
    def _shared_env_fallback(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        for name in cls.shared_fields:
            if name not in data and f"TUNERY_{name.upper()}" in os.environ:
                data[name] = os.environ[f"TUNERY_{name.upper()}"]
        return data

    @field_validator("log_level")
    @classmethod
    def _level(cls, v: str) -> str:
        v = v.upper()
        if v not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError(f"log_level must be DEBUG, INFO, WARNING, ERROR or CRITICAL, not {v!r}")
        return v

    @field_validator("nats_url")
    @classmethod
    def _nats(cls, v: str) -> str:
        if not v.startswith(("nats://", "tls://", "ws://", "wss://")):
            raise ValueError(f"nats_url must start with nats://, tls://, ws:// or wss://, not {v!r}")
        return v

    @property
    def bind_port(self) -> int:
        return self.port or self.default_port

    @property
    def address(self) -> str:
        return f"{self.host}:{self.bind_port}"

    @property
    def service_dir(self) -> Path:
        return self.data_dir / self.service

    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.service_dir / (self.service + '.db')}"
