"""The standard Server-Sent Events dialect for browsers' `EventSource`, without
any I/O.

Genkit's frames (see `wire`) cannot carry ``id:`` or ``event:`` lines, so a
browser's `EventSource` could neither resume by itself nor tell a chunk from
the result. This dialect is the same stream in standard SSE:

- every event has an ``id:`` line with its position in the stream: chunks are
  at 0 to N-1, and the final event of a stream of N chunks is at N;
- the event type is ``chunk``, ``result`` or ``error``, and the ``data:`` line
  is the chunk, the output, or ``{"status", "message"}``, as one line of JSON;
- a response starts with a ``retry:`` field, and a comment line keeps an idle
  connection open through proxies.

A browser reconnects by itself with ``Last-Event-ID`` set to the last id it
saw. A client whose last id is the final event's position has seen the whole
stream, and the server then answers 204, which makes `EventSource` stop.

Departures from the Genkit dialect, each because `EventSource` needs it: the
stream id travels in the URL (`EventSource` sends no custom headers), and a
follower that gives up on a stream that has not ended closes the response
without a final event, so the browser reconnects instead of seeing an error.
"""

from __future__ import annotations

from typing import Final

from .wire import encode_json, quote_value

CHUNK_EVENT: Final = "chunk"
RESULT_EVENT: Final = "result"
ERROR_EVENT: Final = "error"

LAST_EVENT_ID_HEADER: Final = "Last-Event-ID"
LAST_EVENT_ID_PARAMETER: Final = "lastEventId"
STREAM_ID_PARAMETER: Final = "streamId"

_MAX_POSITION_DIGITS: Final = 18


class InvalidPosition(ValueError):
    """A last event id that is not a position this server sent."""


def chunk_event(chunk_json: str, seq: int) -> str:
    """Return the event of one chunk, given as JSON text."""
    return _event(CHUNK_EVENT, chunk_json, seq)


def result_event(output_json: str, seq: int) -> str:
    """Return the final event of a stream that succeeded."""
    return _event(RESULT_EVENT, output_json, seq)


def error_event(status: str, message: str, seq: int) -> str:
    """Return the final event of a stream that failed."""
    data = encode_json({"status": status, "message": message})
    return _event(ERROR_EVENT, data, seq)


def retry_field(milliseconds: int) -> str:
    """Return the field that sets how long a browser waits before reconnecting."""
    return f"retry: {milliseconds}\n\n"


def comment(text: str) -> str:
    """Return a comment line, which clients ignore; `text` must be one line."""
    return f": {text}\n\n"


def parse_position(value: str | None) -> int | None:
    """Return the position a last event id names, or None when there is none.

    Raises `InvalidPosition` unless the value is a decimal number of at most
    18 digits, the only ids this server sends.
    """
    if value is None or not value.strip():
        return None

    text = value.strip()
    if not text.isascii() or not text.isdigit() or len(text) > _MAX_POSITION_DIGITS:
        raise InvalidPosition(
            "a last event id must be a chunk position such as '7', got: "
            f"{quote_value(value)}"
        )
    return int(text)


def _event(name: str, data_json: str, seq: int) -> str:
    return f"id: {seq}\nevent: {name}\ndata: {data_json}\n\n"
