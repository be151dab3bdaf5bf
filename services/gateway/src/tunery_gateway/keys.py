"""API keys: created once and shown once, stored as sha256 hashes, checked in constant time, revocable at once.

A key reads `tny-<id>-<secret>`. The id part finds the row (no scan over hashes, so the time a check takes does not
depend on which keys exist); the hash of the whole key is then compared with `hmac.compare_digest`. Every check reads
the row, so a revocation (by the API or by `tunery keys revoke` writing the same database) holds from the next call,
on every gateway replica. Plain (non-async) code: the CLI uses it directly and the gateway calls it in a thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Engine

from tunery.errors import InvalidArgument, NotFound
from tunery_gateway.errors import PermissionDenied, RateLimited, Unauthenticated
from tunery_gateway.models import ApiKeyRow, now

SCOPES = ("inference", "fine-tune", "admin")
PREFIX = "tny"
_KEY = re.compile(rf"^{PREFIX}-([0-9a-f]{{12}})-([A-Za-z0-9_-]{{20,100}})$")
K = ApiKeyRow.__table__  # type: ignore[attr-defined]
_DUMMY_HASH = hashlib.sha256(b"no such key").hexdigest()


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def parse_scopes(raw: str | Iterable[str]) -> tuple[str, ...]:
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    scopes = tuple(sorted({s.strip().lower() for s in items if s.strip()}))
    bad = [s for s in scopes if s not in SCOPES]
    if bad or not scopes:
        raise InvalidArgument(f"scopes must be a comma-separated subset of {', '.join(SCOPES)}, not {raw!r}",
                              code="invalid_scopes", field="scopes")
    return scopes


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """Who is calling: never the key itself, so it can be logged and put on spans."""

    id: str
    name: str
    scopes: tuple[str, ...]
    rpm: int = 0

    def allows(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes

    def require(self, scope: str) -> None:
        if not self.allows(scope):
            raise PermissionDenied(f"API key {self.id} ({self.name}) lacks the {scope!r} scope; it has "
                                   f"{', '.join(self.scopes)}", code="insufficient_scope")


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: str
    name: str
    scopes: tuple[str, ...]
    rpm: int
    created_at: datetime
    revoked_at: datetime | None

    def as_dict(self) -> dict[str, object]:
        return {"id": self.id, "object": "api_key", "name": self.name, "scopes": list(self.scopes), "rpm": self.rpm,
                "created_at": int(self.created_at.timestamp()),
                "revoked_at": int(self.revoked_at.timestamp()) if self.revoked_at else None}


def _record(row: object) -> KeyRecord:
    m = row._mapping  # type: ignore[attr-defined]
    return KeyRecord(m["id"], m["name"], tuple(m["scopes"].split(",")), m["rpm"], m["created_at"], m["revoked_at"])


class KeyStore:
    def __init__(self, engine: Engine, *, admin_key: str = "", internal_key: str = "") -> None:
        self.engine = engine
        self._admin_hash = hash_key(admin_key) if admin_key else ""
        # The key other Tunery services (the evaluator) call with: inference scope only.
        self._internal_hash = hash_key(internal_key) if internal_key else ""
        self._local = threading.local()
        self._raw: list[Any] = []
        self._raw_lock = threading.Lock()
        placeholder = "?" if engine.dialect.paramstyle == "qmark" else "%s"
        self._lookup_sql = (f"SELECT id, name, key_hash, scopes, rpm, revoked_at FROM {K.name} "
                            f"WHERE id = {placeholder}")

    @property
    def inline(self) -> bool:
        """SQLite lookups take ~20 us: cheaper on the event loop than the hop to a thread."""
        return self.engine.dialect.name == "sqlite"

    def _lookup(self, ident: str) -> tuple[Any, ...] | None:
        """The key row through a DBAPI connection kept per thread: SQLAlchemy's checkout and result handling cost
        ~10x the query itself, and this runs on every call. The read ends its transaction, so a revocation committed
        by anyone is seen by the next call."""
        raw = getattr(self._local, "raw", None)
        if raw is None:
            raw = self.engine.raw_connection()
            self._local.raw = raw
            with self._raw_lock:
                self._raw.append(raw)
        try:
            cur = raw.cursor()
            cur.execute(self._lookup_sql, (ident,))
            row = cur.fetchone()
            cur.close()
            raw.rollback()
            return tuple(row) if row is not None else None
        except Exception:
            self._local.raw = None
            with contextlib.suppress(Exception):
                raw.invalidate()
            raise

    def close(self) -> None:
        with self._raw_lock:
            for raw in self._raw:
                with contextlib.suppress(Exception):
                    raw.close()
            self._raw.clear()

    def create(self, name: str, scopes: str | Iterable[str], rpm: int = 0) -> tuple[KeyRecord, str]:
        """The new key's record and the key itself, which is never stored and cannot be shown again."""
        name = name.strip()
        if not 1 <= len(name) <= 200:
            raise InvalidArgument("a key needs a name of 1-200 characters", code="invalid_name", field="name")
        if rpm < 0:
            raise InvalidArgument(f"rpm must be 0 (unlimited) or more, not {rpm}", code="invalid_rpm", field="rpm")
        scope_t = parse_scopes(scopes)
        ident = secrets.token_hex(6)
        key = f"{PREFIX}-{ident}-{secrets.token_urlsafe(32)}"
        values = {"id": f"key_{ident}", "name": name, "key_hash": hash_key(key), "scopes": ",".join(scope_t),
                  "rpm": rpm, "created_at": now()}
        with self.engine.begin() as conn:
            conn.execute(insert(K).values(**values))
        return KeyRecord(values["id"], name, scope_t, rpm, values["created_at"], None), key  # type: ignore[arg-type]

    def list(self, *, include_revoked: bool = False) -> list[KeyRecord]:
        q = select(K).order_by(K.c.created_at)
        if not include_revoked:
            q = q.where(K.c.revoked_at.is_(None))
        with self.engine.connect() as conn:
            return [_record(r) for r in conn.execute(q)]

    def find(self, id_or_name: str) -> KeyRecord:
        with self.engine.connect() as conn:
            rows = list(conn.execute(select(K).where((K.c.id == id_or_name) | (K.c.name == id_or_name))))
        if not rows:
            raise NotFound(f"no API key {id_or_name!r}", code="key_not_found", field="key")
        by_id = [r for r in rows if r._mapping["id"] == id_or_name]
        if by_id:
            return _record(by_id[0])
        active = [r for r in rows if r._mapping["revoked_at"] is None]
        if len(active) > 1:
            raise InvalidArgument(f"{len(active)} active keys are named {id_or_name!r}; give the key id",
                                  code="ambiguous_key", field="key")
        return _record((active or rows)[0])

    def revoke(self, id_or_name: str) -> KeyRecord:
        rec = self.find(id_or_name)
        if rec.revoked_at is None:
            with self.engine.begin() as conn:
                conn.execute(update(K).where(K.c.id == rec.id, K.c.revoked_at.is_(None)).values(revoked_at=now()))
        return self.find(rec.id)

    def verify(self, key: str) -> KeyInfo:
        """The caller's identity, or Unauthenticated; the work done does not depend on how close a guess was."""
        if self._admin_hash and hmac.compare_digest(hash_key(key), self._admin_hash):
            return KeyInfo("key_admin_env", "TUNERY_GATEWAY_ADMIN_API_KEY", ("admin",))
        if self._internal_hash and hmac.compare_digest(hash_key(key), self._internal_hash):
            return KeyInfo("key_internal_env", "TUNERY_GATEWAY_INTERNAL_API_KEY", ("inference",))
        m = _KEY.match(key)
        row = self._lookup(f"key_{m.group(1)}") if m else None
        ok = hmac.compare_digest(hash_key(key), row[2] if row is not None else _DUMMY_HASH)
        if row is None or not ok:
            raise Unauthenticated("invalid API key", code="invalid_api_key")
        ident, name, _, scopes, rpm, revoked_at = row
        if revoked_at is not None:
            raise Unauthenticated(f"API key {ident} was revoked", code="revoked_api_key")
        return KeyInfo(ident, name, tuple(scopes.split(",")), int(rpm))


class RateLimiter:
    """Token bucket per key: `rpm` calls per minute with bursts of up to `rpm`; per gateway process."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def check(self, key_id: str, rpm: int) -> None:
        if rpm <= 0:
            return
        rate = rpm / 60.0
        t = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key_id, (float(rpm), t))
            tokens = min(float(rpm), tokens + (t - last) * rate)
            if tokens < 1.0:
                self._buckets[key_id] = (tokens, t)
                raise RateLimited(f"rate limit of {rpm} requests per minute reached for API key {key_id}",
                                  code="rate_limit_exceeded", retry_after=(1.0 - tokens) / rate)
            self._buckets[key_id] = (tokens - 1.0, t)
