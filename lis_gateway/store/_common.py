"""What the store modules share: errors, time and hashing helpers."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import CursorResult


class StoreError(Exception):
    """Base class of store-level domain errors."""


class StaleVersionError(StoreError):
    """A correction was based on a version that is not the latest one."""


class NotFoundError(StoreError):
    """The row asked for does not exist."""


def primary_key(result: CursorResult[Any]) -> tuple[Any, ...]:
    key = result.inserted_primary_key
    if key is None:
        raise StoreError("the database returned no primary key")
    return tuple(key)


def as_utc(value: datetime) -> datetime:
    if value.tzinfo is None:  # SQLite hands back naive datetimes; we store UTC
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def require_aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware")
    return value.astimezone(UTC)


def canonical_json(obj: object) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256_hex(text: str | bytes) -> str:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()
