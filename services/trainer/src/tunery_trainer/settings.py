"""Settings of the trainer service and its workers (env TUNERY_TRAINER_<FIELD>)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from tunery.settings import ServiceSettings

DEFAULT_PORT = 50052


class TrainerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TUNERY_TRAINER_", extra="ignore", validate_default=True)

    service: ClassVar[str] = "trainer"
    default_port: ClassVar[int] = DEFAULT_PORT
    shared_fields: ClassVar[tuple[str, ...]] = (
        *ServiceSettings.shared_fields, "dataset_addr", "artifacts_dir", "evaluator_addr"
    )

    dataset_addr: str = Field("127.0.0.1:50051", description="gRPC address of the dataset service.")
    evaluator_addr: str = Field(
        "127.0.0.1:50053", description="gRPC address of the evaluator service (jobs with spec.evaluation)."
    )
    evaluator_retry_seconds: float = Field(
        300.0, gt=0, description="How long a succeeded job's evaluation keeps trying an evaluator that does not "
        "answer before its error is recorded with the job.",
    )
    evaluation_model_wait_seconds: float = Field(
        120.0, gt=0, description="How long to wait for the gateway to serve a just-succeeded job's model (the "
        "evaluator answers unknown_model until then) before the evaluation's error is recorded.",
    )
    evaluation_poll_seconds: float = Field(
        30.0, gt=0, description="Longest wait between looks at a running evaluation (its NATS events wake the "
        "follower sooner).",
    )
    artifacts_dir: str = Field("", description="Shared artifact root; empty means <data_dir>/artifacts.")
    # Worker settings.
    worker_name: str = Field("", description="Name of this worker in job records; empty: host-pid.")
    ack_wait_seconds: float = Field(30.0, gt=0, description="A job whose worker is silent this long is redelivered.")
    max_deliver: int = Field(3, ge=1, le=100, description="Attempts per job before it ends failed.")
    heartbeat_seconds: float = Field(0.0, ge=0, description="in_progress() interval; 0 means ack_wait / 4.")
    processes_per_job: int = Field(
        1,
        ge=0,
        le=1024,
        description="Training processes per job on this worker's machine, started with torchrun for backends that "
        "support it (peft): one per GPU, or several CPU processes on gloo; 0 means one per visible GPU.",
    )
    min_examples: int = Field(10, ge=1, description="Fewest training examples a job accepts.")

    @property
    def artifact_root(self) -> Path:
        return Path(self.artifacts_dir) if self.artifacts_dir else self.data_dir / "artifacts"
