"""The stream record: the Firestore document that describes one stream.

A stream with id ``S`` in collection ``C`` is stored as

- the record ``C/S``: status, lease, the newest chunks (the *tail*), and the
  output or error once the stream has ended;
- chunk documents ``C/S/chunks/NNNNNNNNNN``, each holding a run of older
  chunks and named by the zero-padded position of its last chunk, so the
  documents that hold position ``p`` and later sort from ``p`` on.

Chunks and outputs are stored as JSON text, so what a replay sends is byte for
byte what was sent live. A run of chunks, the tail or the chunks of a chunk
document, is stored as one string (`join_chunks`); the store converts it to
and from a list of texts, so code above the store sees lists. Every document
carries `expiresAt` for the TTL policy. Writers replace whole top-level
fields only, so a record can be kept as a dict and updated with the same
fields that were written.
"""

from __future__ import annotations

import datetime
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

CHUNKS: Final = "chunks"
"""Subcollection of a record that holds its chunk documents."""

# Fields of a stream record.
FLOW: Final = "flow"
STATUS: Final = "status"
INPUT: Final = "input"
OWNER: Final = "owner"
CREATED_AT: Final = "createdAt"
UPDATED_AT: Final = "updatedAt"
ENDED_AT: Final = "endedAt"
EXPIRES_AT: Final = "expiresAt"
TTL_SECONDS: Final = "ttlSeconds"
COUNT: Final = "count"
TAIL_START: Final = "tailStart"
TAIL: Final = "tail"
COMMITS: Final = "commits"
RESULT: Final = "result"
ERROR: Final = "error"
LEASE: Final = "lease"
CANCEL_REQUESTED: Final = "cancelRequested"

# Fields of a chunk document.
FIRST: Final = "first"
CHUNK_TEXTS: Final = "chunks"

SEGMENT_ID_DIGITS: Final = 10

CHUNK_SEPARATOR: Final = "\n"
"""Separates the chunks of a stored run. JSON text made by `encode_json` never
contains a raw newline: a newline inside a string is escaped as ``\\n``."""


class Status(enum.StrEnum):
    """Life-cycle state of a stream."""

    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


ENDED: Final = frozenset({Status.DONE, Status.FAILED, Status.CANCELLED})


class RecordError(ValueError):
    """A stored stream record does not have the expected shape."""


@dataclass(frozen=True)
class Lease:
    """The right of one producer to write a stream, until `expires_at`.

    `token` grows by one at every takeover; a producer writes only while the
    stored token is still its own.
    """

    holder: str
    token: int
    expires_at: datetime.datetime

    def to_fields(self) -> dict[str, Any]:
        return {
            "holder": self.holder,
            "token": self.token,
            "expiresAt": self.expires_at,
        }


@dataclass(frozen=True)
class StreamState:
    """What one reading of a stream record shows."""

    stream_id: str
    flow: str
    status: Status
    count: int
    tail_start: int
    tail: tuple[str, ...]
    commits: int
    lease: Lease
    expires_at: datetime.datetime
    update_time: datetime.datetime
    ttl_seconds: float
    input_json: str | None = None
    owner: str | None = None
    result_json: str | None = None
    error_status: str | None = None
    error_message: str | None = None
    ended_at: datetime.datetime | None = None
    cancel_requested: bool = False

    @property
    def ended(self) -> bool:
        return self.status in ENDED

    def is_expired(self, now: datetime.datetime) -> bool:
        """Tell whether the stream is past `expiresAt`, so it counts as gone."""
        return self.expires_at <= now

    def lease_expired(self, now: datetime.datetime, grace: float = 0.0) -> bool:
        """Tell whether a running stream's producer missed its lease renewal."""
        if self.ended:
            return False
        return self.lease.expires_at + datetime.timedelta(seconds=grace) <= now

    @classmethod
    def from_record(
        cls,
        stream_id: str,
        record: Mapping[str, Any],
        update_time: datetime.datetime,
    ) -> StreamState:
        """Parse a stored record; raise `RecordError` if it is malformed."""
        try:
            lease = record[LEASE]
            error = record.get(ERROR) or {}
            return cls(
                stream_id=stream_id,
                flow=str(record[FLOW]),
                status=Status(record[STATUS]),
                count=int(record[COUNT]),
                tail_start=int(record[TAIL_START]),
                tail=tuple(split_chunks(record[TAIL])),
                commits=int(record[COMMITS]),
                lease=Lease(
                    str(lease["holder"]), int(lease["token"]), lease["expiresAt"]
                ),
                expires_at=record[EXPIRES_AT],
                update_time=update_time,
                ttl_seconds=float(record[TTL_SECONDS]),
                input_json=record.get(INPUT),
                owner=record.get(OWNER),
                result_json=record.get(RESULT),
                error_status=error.get("status"),
                error_message=error.get("message"),
                ended_at=record.get(ENDED_AT),
                cancel_requested=bool(record.get(CANCEL_REQUESTED, False)),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise RecordError(
                f"stream record {stream_id!r} is malformed: {error!r}"
            ) from None


def new_record(
    *,
    flow: str,
    input_json: str,
    owner: str | None,
    lease: Lease,
    now: datetime.datetime,
    ttl_seconds: float,
) -> dict[str, Any]:
    """Return the fields of a new running stream."""
    return {
        FLOW: flow,
        STATUS: Status.RUNNING.value,
        INPUT: input_json,
        OWNER: owner,
        CREATED_AT: now,
        UPDATED_AT: now,
        EXPIRES_AT: running_expiry(lease, ttl_seconds),
        TTL_SECONDS: ttl_seconds,
        COUNT: 0,
        TAIL_START: 0,
        TAIL: [],
        COMMITS: 1,
        LEASE: lease.to_fields(),
        CANCEL_REQUESTED: False,
    }


def running_expiry(lease: Lease, ttl_seconds: float) -> datetime.datetime:
    """Return `expiresAt` of a running stream: the TTL counts from the lease end.

    Each lease renewal moves it on, so a running stream never expires, and a
    stream whose producer died is cleaned up one TTL after its lease ran out.
    """
    return lease.expires_at + datetime.timedelta(seconds=ttl_seconds)


def ended_expiry(ended_at: datetime.datetime, ttl_seconds: float) -> datetime.datetime:
    """Return `expiresAt` of an ended stream."""
    return ended_at + datetime.timedelta(seconds=ttl_seconds)


def join_chunks(texts: Sequence[str]) -> str:
    """Return a run of chunk texts as the one string that stores it.

    One string costs the Firestore client one value to encode and to decode
    where an array costs one per chunk, which dominated the CPU time of
    writes and replays. Its stored size is the same: an array counts each
    string's UTF-8 bytes plus one, and so do the texts with their separators.
    """
    return CHUNK_SEPARATOR.join(texts)


def split_chunks(stored: str | Sequence[str]) -> list[str]:
    """Return the chunk texts of a stored run; an array of texts is read too."""
    if isinstance(stored, str):
        return stored.split(CHUNK_SEPARATOR) if stored else []
    return list(stored)


def storable_text(text: str) -> str:
    """Replace each lone surrogate in `text` with U+FFFD, because Firestore
    stores only valid UTF-8 strings."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def segment_id(last: int) -> str:
    """Return the chunk document id for a run of chunks ending at `last`."""
    return f"{last:0{SEGMENT_ID_DIGITS}d}"
