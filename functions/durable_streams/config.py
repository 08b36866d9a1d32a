"""Options of a durable stream and the environment variables behind them."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_COLLECTION = "genkit-streams"
KIB = 1024
MIB = 1024 * KIB

# Environment variable for each option that may be set from the environment.
ENVIRONMENT: dict[str, str] = {
    "collection": "FIRESTORE_STREAMS_COLLECTION",
    "timeout": "STREAM_TIMEOUT_SECONDS",
    "ttl": "STREAM_TTL_SECONDS",
    "write_interval": "STREAM_WRITE_INTERVAL_SECONDS",
    "lease": "STREAM_LEASE_SECONDS",
    "retry_deadline": "STREAM_RETRY_DEADLINE_SECONDS",
}


class ConfigError(ValueError):
    """An option or environment variable has an invalid value."""


@dataclass(frozen=True)
class StreamOptions:
    """How streams of one flow are stored, written and followed.

    Times are in seconds and sizes in bytes of UTF-8 JSON text.
    """

    collection: str = DEFAULT_COLLECTION
    """Firestore collection of the stream records."""

    timeout: float = 60.0
    """A reader gives up with DEADLINE_EXCEEDED after this long without any
    sign of life from the stream: no chunk and no lease renewal."""

    ttl: float = 300.0
    """How long a finished stream is kept before its `expiresAt` passes."""

    write_interval: float = 0.5
    """Least time between two writes of one stream's record; chunks that
    arrive in between are coalesced into the next write."""

    lease: float = 15.0
    """How long a producer's lease lasts; it is renewed every third of it."""

    retry_deadline: float = 30.0
    """How long a failing write is retried before the stream is failed."""

    chunk_retention: float = 86400.0
    """How long chunk documents are kept if their stream never ends; when it
    ends, they expire with the record."""

    tail_bytes: int = 64 * KIB
    """Chunks kept in the stream record before they move to a chunk document."""

    segment_bytes: int = 512 * KIB
    """Size a chunk document is filled to when chunks move out of the record."""

    max_chunk_bytes: int = 256 * KIB
    """Largest chunk a flow may send."""

    max_output_bytes: int = 256 * KIB
    """Largest flow output."""

    max_request_bytes: int = 256 * KIB
    """Largest request body; the flow input is stored with the stream."""

    max_pending_bytes: int = 16 * MIB
    """Chunks buffered before a flow's `send_chunk` blocks until they are
    written."""

    def __post_init__(self) -> None:
        if not self.collection or "/" in self.collection:
            raise ConfigError(
                "collection must be a collection id without '/', "
                f"got: {self.collection!r}"
            )
        for name in ("timeout", "ttl", "lease", "retry_deadline", "chunk_retention"):
            if getattr(self, name) <= 0:
                raise ConfigError(
                    f"{name} must be positive, got: {getattr(self, name)!r}"
                )
        if self.write_interval < 0:
            raise ConfigError(
                f"write_interval must be 0 or more, got: {self.write_interval!r}"
            )
        if self.max_chunk_bytes > self.segment_bytes:
            raise ConfigError("max_chunk_bytes must not exceed segment_bytes")

    @property
    def renew_interval(self) -> float:
        """Time between lease renewals of a producer that sends nothing."""
        return self.lease / 3

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> StreamOptions:
        """Build options from the environment; keyword arguments take precedence."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}

        for field in dataclasses.fields(cls):
            variable = ENVIRONMENT.get(field.name)
            if variable is None or not environ.get(variable):
                continue
            raw = environ[variable]
            values[field.name] = (
                raw if field.name == "collection" else _seconds(variable, raw)
            )

        values.update(
            {name: value for name, value in overrides.items() if value is not None}
        )
        return cls(**values)


def _seconds(variable: str, raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(
            f"{variable} must be a number of seconds, got: {raw!r}"
        ) from None
