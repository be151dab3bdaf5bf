"""Small conversions every servicer needs."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf import timestamp_pb2


def ts(dt: datetime) -> timestamp_pb2.Timestamp:
    """A Timestamp from a datetime; naive values (SQLite returns them) are UTC."""
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(dt if dt.tzinfo else dt.replace(tzinfo=UTC))
    return out
