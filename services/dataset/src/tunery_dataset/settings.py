"""Settings of the dataset service (env TUNERY_DATASET_<FIELD>)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from tunery.settings import ServiceSettings

DEFAULT_PORT = 50051


class DatasetSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TUNERY_DATASET_", extra="ignore", validate_default=True)

    service: ClassVar[str] = "dataset"
    default_port: ClassVar[int] = DEFAULT_PORT

    max_upload_bytes: int = Field(512 * 1024 * 1024, gt=0, description="Largest accepted upload (bytes).")
    max_line_bytes: int = Field(8 * 1024 * 1024, gt=0, description="Largest accepted single example line (bytes).")
    max_problems: int = Field(50, gt=0, le=10_000, description="Problems listed per rejected upload (all are counted).")
