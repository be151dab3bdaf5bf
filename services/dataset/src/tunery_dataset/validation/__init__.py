"""Validation of fine-tuning examples: the rules for one example (`rules`) and the streaming upload check (`stream`).

Problems are `tunery.errors.Problem`s (code, message, JSON path in ``field``, ``line``, ``file``, severity), the same
class the gRPC edge sends back to the client.
"""

from __future__ import annotations

from tunery_dataset.validation.rules import (
    MAX_PROBLEMS_PER_LINE,
    ExampleFormat,
    detect_format,
    is_plain_chat,
    validate_object,
)
from tunery_dataset.validation.stream import JsonlValidator, ParsedExample, UploadTooLarge

__all__ = [
    "MAX_PROBLEMS_PER_LINE",
    "ExampleFormat",
    "JsonlValidator",
    "ParsedExample",
    "UploadTooLarge",
    "detect_format",
    "is_plain_chat",
    "validate_object",
]
