"""Settings of the evaluator service (env TUNERY_EVALUATOR_<FIELD>)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from tunery.settings import ServiceSettings

DEFAULT_PORT = 50053


class EvaluatorSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TUNERY_EVALUATOR_", extra="ignore", validate_default=True)

    service: ClassVar[str] = "evaluator"
    default_port: ClassVar[int] = DEFAULT_PORT
    shared_fields: ClassVar[tuple[str, ...]] = (*ServiceSettings.shared_fields, "dataset_addr", "trainer_addr")

    dataset_addr: str = Field("127.0.0.1:50051", description="gRPC address of the dataset service.")
    trainer_addr: str = Field("127.0.0.1:50052", description="gRPC address of the trainer service (data.job_id).")
    gateway_url: str = Field("http://127.0.0.1:8000/v1", description="OpenAI-compatible base URL of the gateway.")
    gateway_api_key: SecretStr = Field(SecretStr(""), description="Key the gateway accepts (inference scope).")
    gateway_wait_seconds: float = Field(
        300.0, ge=0, description="How long a run waits for an unreachable endpoint before the evaluation fails."
    )
    request_timeout_seconds: float = Field(300.0, gt=0, description="Deadline of one model call.")
    default_concurrency: int = Field(4, ge=1, le=256, description="Requests in flight per model when a spec says 0.")
    max_running: int = Field(2, ge=1, le=64, description="Evaluations this process runs at the same time.")
    ack_wait_seconds: float = Field(30.0, gt=0, description="A run whose process is silent this long is redelivered.")
    max_deliver: int = Field(5, ge=1, le=100, description="Attempts per evaluation before it ends failed.")
    max_examples: int = Field(100_000, ge=1, description="Largest evaluation accepted (examples).")
