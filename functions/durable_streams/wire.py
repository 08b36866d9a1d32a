"""The wire format of Genkit's durable streaming protocol, without any I/O.

A frame is ``data: `` followed by one line of compact JSON and a blank line.
Three frames exist: a chunk (``{"message": ...}``), the final output
(``{"result": ...}``) and a failure (``{"error": {"status", "message"}}``).

Deliberate additions to Genkit's frames, each safe for Genkit's JS and Dart
clients because they ignore unknown keys of the frame object:

- every chunk frame carries ``"seq"``, the chunk's 0-based position in the
  stream, so a client can resume after the last position it saw.

Chunks and outputs are stored as their JSON text and copied into frames as
text, so a replay is byte for byte what was sent live.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any, Final

STREAM_ID_HEADER: Final = "X-Genkit-Stream-Id"
EVENT_STREAM: Final = "text/event-stream"

# 16 random bytes in URL-safe base64 without padding: 22 characters, 128 bits.
# The last character carries the last 2 bits followed by 4 zero bits, so it is
# one of A, Q, g and w.
_STREAM_ID_BYTES: Final = 16
_STREAM_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]{21}[AQgw]")

_SURROGATE: Final = re.compile("[\ud800-\udfff]")

QUOTED_CHARACTERS: Final = 40
"""Characters of a rejected value that an error message quotes."""

# HTTP status for each Genkit status name, as Genkit's servers map them.
HTTP_STATUS: Final[dict[str, int]] = {
    "OK": 200,
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "UNAUTHENTICATED": 401,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
}


class JsonEncodingError(ValueError):
    """A value cannot be sent as JSON (NaN, infinity, or a non-JSON type)."""


def encode_json(value: Any) -> str:
    """Encode a value as one line of compact JSON text.

    Raises `JsonEncodingError` for NaN, infinities and values that are not
    JSON types, because Genkit clients cannot parse them.
    """
    try:
        text = json.dumps(
            value, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except (TypeError, ValueError, RecursionError) as error:
        raise JsonEncodingError(f"value is not JSON-serializable: {error}") from None

    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate cannot be sent as UTF-8, but its \u escape can. It
        # occurs only inside a JSON string, where the escape means the same.
        text = _SURROGATE.sub(_escape_surrogate, text)

    return text


def _escape_surrogate(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def chunk_frame(chunk_json: str, seq: int) -> str:
    """Return the frame of one chunk, given as JSON text."""
    return f'data: {{"message":{chunk_json},"seq":{seq}}}\n\n'


def result_frame(output_json: str) -> str:
    """Return the final frame of a flow that succeeded."""
    return f'data: {{"result":{output_json}}}\n\n'


def error_frame(status: str, message: str) -> str:
    """Return the final frame of a flow that failed."""
    return f"data: {error_json(status, message)}\n\n"


def error_json(status: str, message: str) -> str:
    """Return the JSON error object Genkit clients read."""
    return encode_json({"error": {"status": status, "message": message}})


def http_status(status: str) -> int:
    """Return the HTTP status code for a Genkit status name."""
    return HTTP_STATUS.get(status, 500)


def accepts_event_stream(accept: str | None) -> bool:
    """Tell whether an Accept header asks for Server-Sent Events.

    Media ranges are compared case-insensitively; parameters are allowed and a
    range with ``q=0`` does not count.
    """
    if not accept:
        return False

    for media_range in accept.split(","):
        media_type, _, parameters = media_range.partition(";")
        if media_type.strip().lower() != EVENT_STREAM:
            continue
        if not _has_zero_quality(parameters):
            return True

    return False


def _has_zero_quality(parameters: str) -> bool:
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() != "q":
            continue
        try:
            return float(value.strip()) == 0.0
        except ValueError:
            return False
    return False


def quote_value(value: str) -> str:
    """Quote a rejected value for an error message, cut after its first
    `QUOTED_CHARACTERS` characters."""
    if len(value) <= QUOTED_CHARACTERS:
        return repr(value)
    return f"{value[:QUOTED_CHARACTERS]!r}..."


def new_stream_id() -> str:
    """Return a new random stream id with 128 bits of entropy."""
    return secrets.token_urlsafe(_STREAM_ID_BYTES)


def is_valid_stream_id(value: str) -> bool:
    """Tell whether a value has the exact format of an id from `new_stream_id`."""
    return _STREAM_ID_PATTERN.fullmatch(value) is not None
