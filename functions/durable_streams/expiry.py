"""When the documents of an ended stream expire. Pure functions, no I/O.

Once a stream has ended (done, failed or cancelled), its record and all its
chunk documents expire together at `endedAt` plus the stream's own
`ttlSeconds`, and Firestore's TTL policy on `expiresAt` deletes them after
that. Until then each document carries its own provisional expiry: the
record one TTL after its lease, a chunk document `chunk_retention` after its
creation.

The Firestore trigger applies these decisions. Every decision depends only on
the stored record, and an ended record never changes status, end time or
TTL, so handling the same event twice, or an old event after a new one,
comes to the same result.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import record as fields
from .record import ENDED, RecordError, Status, ended_expiry


@dataclass(frozen=True)
class Finalization:
    """The writes that make an ended stream's documents expire together."""

    expires_at: datetime.datetime
    """The final `expiresAt` of every document of the stream."""

    record_stale: bool
    """The record's `expiresAt` differs from `expires_at`."""

    has_chunk_documents: bool
    """Some chunks were moved out of the record into chunk documents."""


def plan_finalization(record: Mapping[str, Any] | None) -> Finalization | None:
    """Decide what a stored record needs; None if it is deleted or still running.

    Raises `RecordError` for an ended record without a valid end time or TTL.
    """
    if record is None or not _is_ended(record.get(fields.STATUS)):
        return None

    expires_at = final_expiry(record)
    return Finalization(
        expires_at=expires_at,
        record_stale=record.get(fields.EXPIRES_AT) != expires_at,
        has_chunk_documents=_tail_start(record) > 0,
    )


def final_expiry(record: Mapping[str, Any]) -> datetime.datetime:
    """Return `endedAt` plus `ttlSeconds` of an ended record."""
    ended_at = record.get(fields.ENDED_AT)
    if not isinstance(ended_at, datetime.datetime) or ended_at.tzinfo is None:
        raise RecordError(f"{fields.ENDED_AT} is not a timestamp: {ended_at!r}")

    ttl = record.get(fields.TTL_SECONDS)
    if isinstance(ttl, bool) or not isinstance(ttl, int | float):
        raise RecordError(f"{fields.TTL_SECONDS} is not a number: {ttl!r}")
    if not math.isfinite(ttl) or ttl <= 0:
        raise RecordError(f"{fields.TTL_SECONDS} must be positive, got: {ttl!r}")

    return ended_expiry(ended_at, float(ttl))


def _is_ended(status: Any) -> bool:
    try:
        return Status(status) in ENDED
    except ValueError:
        return False


def _tail_start(record: Mapping[str, Any]) -> int:
    """Return the position of the first chunk the record itself stores.

    Chunks before that position live in chunk documents. A chunk document is
    written in the same batch that moves `tailStart` past its chunks, so 0
    means that the stream has no chunk documents.
    """
    tail_start = record.get(fields.TAIL_START, 0)
    if isinstance(tail_start, bool) or not isinstance(tail_start, int):
        raise RecordError(f"{fields.TAIL_START} is not an integer: {tail_start!r}")
    return tail_start
