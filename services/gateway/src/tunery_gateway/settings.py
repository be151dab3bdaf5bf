"""Settings of the gateway (env TUNERY_GATEWAY_<FIELD>), validated once at start."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from tunery.settings import ServiceSettings

DEFAULT_PORT = 8000


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TUNERY_GATEWAY_", extra="ignore", validate_default=True)

    service: ClassVar[str] = "gateway"
    default_port: ClassVar[int] = DEFAULT_PORT
    shared_fields: ClassVar[tuple[str, ...]] = (*ServiceSettings.shared_fields, "dataset_addr", "artifacts_dir")

    # Inference.
    engine: str = Field("transformers", description="Inference engine plugin (tunery.inference_backends).")
    base_models: str = Field(
        "smollm2-135m-instruct",
        description="Comma-separated base models to serve: catalog names or local transformers folders.",
    )
    max_adapters: int = Field(8, ge=1, description="LoRA adapters kept loaded per base model; the LRU is evicted.")
    max_batch_size: int = Field(16, ge=1, le=256, description="Sequences decoded together per base model.")
    max_queue: int = Field(256, ge=1, description="Sequences waiting for a batch slot before new calls get 503.")
    queue_timeout_seconds: float = Field(60.0, gt=0, description="A call that waits longer for a slot gets 503.")
    default_max_tokens: int = Field(
        512, ge=1, description="Completion tokens when a call names no max_tokens (bounded by the context)."
    )
    dtype: str = Field("float32", description="Weights dtype for the transformers engine: float32, bfloat16, float16.")
    device: str = Field("cpu", description="torch device of the transformers engine (cpu, cuda, cuda:1, ...).")
    torch_threads: int = Field(0, ge=0, description="torch intra-op threads; 0 leaves torch's default.")
    tgi_url: str = Field("", description="Base URL of a text-generation-inference server (engine=tgi).")
    tgi_model: str = Field("", description="Id under which the TGI base model is served; empty: first base model.")
    tgi_context_length: int = Field(0, ge=0, description="TGI's max total tokens; 0 asks TGI's /info.")
    tgi_timeout_seconds: float = Field(300.0, gt=0, description="Deadline of one call to TGI.")
    # HTTP and keys.
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="Larger request bodies are refused (413).")
    admin_api_key: SecretStr = Field(SecretStr(""), description="Bootstrap admin key; compared in constant time.")
    internal_api_key: SecretStr = Field(
        SecretStr(""),
        description="Key of Tunery's own services (the evaluator), inference scope only; compared in constant time. "
        "`tunery up` makes one per data directory.",
    )
    allow_unauthenticated: bool = Field(
        False, description="LOCAL DEVELOPMENT ONLY: serve /v1 without API keys (every call acts as admin)."
    )
    metrics_require_key: bool = Field(False, description="Ask for an admin key on GET /metrics.")
    # Request logs and traces.
    log_requests: bool = Field(True, description="Store every inference call as a request log.")
    log_content: bool = Field(True, description="Store prompt and completion text in request logs.")
    trace_content: bool = Field(False, description="Put prompt and completion text on trace spans (opt-in).")
    # Other services.
    dataset_addr: str = Field("127.0.0.1:50051", description="gRPC address of the dataset service (log imports).")
    artifacts_dir: str = Field("", description="Shared artifact root; empty means <data_dir>/artifacts.")
    listen_job_events: bool = Field(True, description="Serve adapters of jobs that succeed (NATS job events).")

    @field_validator("engine")
    @classmethod
    def _engine(cls, v: str) -> str:
        return v.strip().lower()

    @field_validator("dtype")
    @classmethod
    def _dtype(cls, v: str) -> str:
        if v not in {"float32", "bfloat16", "float16"}:
            raise ValueError(f"dtype must be float32, bfloat16 or float16, not {v!r}")
        return v

    @property
    def base_model_names(self) -> list[str]:
        return [n.strip() for n in self.base_models.split(",") if n.strip()]

    @property
    def artifact_root(self) -> Path:
        return Path(self.artifacts_dir) if self.artifacts_dir else self.data_dir / "artifacts"
