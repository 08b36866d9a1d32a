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
    "heartbeat": "STREAM_HEARTBEAT_SECONDS",
    "auth": "STREAM_AUTH",
    "max_request_bytes": "STREAM_MAX_REQUEST_BYTES",
    "max_json_depth": "STREAM_MAX_JSON_DEPTH",
    "max_chunk_bytes": "STREAM_MAX_CHUNK_BYTES",
    "max_output_bytes": "STREAM_MAX_OUTPUT_BYTES",
    "max_streams_per_instance": "STREAM_MAX_STREAMS_PER_INSTANCE",
    "max_streams_per_caller": "STREAM_MAX_STREAMS_PER_CALLER",
}

AUTH_MODES = ("off", "optional", "required")


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

    heartbeat: float = 15.0
    """Longest silence on a standard SSE response before a comment line is
    sent, so that proxies keep an idle connection open."""

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

    max_json_depth: int = 32
    """Deepest nesting of arrays and objects in a request body; the body
    object itself is level 1."""

    max_streams_per_instance: int = 100
    """Flows that may run at once on one instance, streamed or plain calls,
    counted over every flow of the process."""

    max_streams_per_caller: int = 10
    """Flows one authenticated caller may run at once on one instance.
    Anonymous callers are limited by `max_streams_per_instance` only."""

    auth: str = "off"
    """Firebase Auth mode of requests, one of `AUTH_MODES`.

    ``"off"`` ignores the Authorization header, so the stream id alone grants
    access to a stream. ``"optional"`` verifies a Bearer ID token when one is
    sent and makes its user the stream's owner. ``"required"`` also rejects
    requests without a valid token."""

    max_pending_bytes: int = 16 * MIB
    """Chunks buffered before a flow's `send_chunk` blocks until they are
    written."""

    def __post_init__(self) -> None:
        if not self.collection or "/" in self.collection:
            raise ConfigError(
                "collection must be a collection id without '/', "
                f"got: {self.collection!r}"
            )
        for name in (
            "timeout",
            "ttl",
            "lease",
            "retry_deadline",
            "heartbeat",
            "chunk_retention",
        ):
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
        for name in _POSITIVE_LIMITS:
            if getattr(self, name) < 1:
                raise ConfigError(
                    f"{name} must be at least 1, got: {getattr(self, name)!r}"
                )
        if self.auth not in AUTH_MODES:
            raise ConfigError(
                f"auth must be one of {', '.join(AUTH_MODES)}, got: {self.auth!r}"
            )

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
            values[field.name] = _parse(variable, environ[variable], field.type)

        values.update(
            {name: value for name, value in overrides.items() if value is not None}
        )
        return cls(**values)


_POSITIVE_LIMITS = (
    "max_request_bytes",
    "max_json_depth",
    "max_chunk_bytes",
    "max_output_bytes",
    "max_streams_per_instance",
    "max_streams_per_caller",
)


def _parse(variable: str, raw: str, kind: object) -> str | int | float:
    """Convert an environment variable to the type of its option."""
    if kind in (str, "str"):
        return raw.strip()

    if kind in (int, "int"):
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(
                f"{variable} must be a whole number, got: {raw!r}"
            ) from None

    try:
        return float(raw)
    except ValueError:
        raise ConfigError(
            f"{variable} must be a number of seconds, got: {raw!r}"
        ) from None
