"""The bodies of streaming responses, in Genkit's dialect or in standard SSE.

A body follows one stream from a position on and turns what it yields into
bytes. Frames are joined into pieces of about `WRITE_BYTES`, so that a replay
of many small chunks costs a few large writes and not one write per chunk.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Final, Protocol

from .connection import ClientConnection
from .hub import Subscription
from .producer import INTERNAL_MESSAGE
from .reader import ChunkRun, Idle, StreamEnd, StreamEvent
from .sse import chunk_event, comment, error_event, result_event, retry_field
from .wire import chunk_frame, error_frame, result_frame

if TYPE_CHECKING:
    from .flow import DurableFlow

logger = logging.getLogger(__name__)

WRITE_BYTES: Final = 64 * 1024
"""Frames are joined into pieces of about this size before they are sent."""

RETRY_MILLISECONDS: Final = 2000
"""How long a browser waits before it reconnects a dropped standard SSE
response."""


class Dialect(Protocol):
    """A wire format for the events of a stream."""

    def preamble(self) -> bytes:
        """Return the first piece, sent at once with the headers."""

    def render(self, events: Iterator[StreamEvent]) -> Iterator[bytes]:
        """Turn stream events into pieces of the body."""

    def failure(self) -> bytes:
        """Return the last piece of a body whose follower raised."""


class GenkitFrames:
    """Genkit's ``data:`` frames; every body ends with one result or error."""

    def preamble(self) -> bytes:
        # An empty first piece makes the server send the headers at once, so
        # a client that drops before the first chunk still has the stream id.
        return b""

    def render(self, events: Iterator[StreamEvent]) -> Iterator[bytes]:
        for event in events:
            if isinstance(event, StreamEnd):
                yield _genkit_end(event).encode()
                return
            if isinstance(event, ChunkRun):
                yield from join_pieces(
                    chunk_frame(text, seq) for seq, text in _numbered(event)
                )

    def failure(self) -> bytes:
        return error_frame("INTERNAL", INTERNAL_MESSAGE).encode()


class StandardEvents:
    """Standard SSE events with ids, for `EventSource` (see `sse`).

    `start` is the first position the client has not seen. A final event the
    client has seen is not sent again, and a follower that gives up ends the
    body without a final event, so that the client reconnects.
    """

    def __init__(self, start: int, heartbeat: float) -> None:
        self._start = start
        self._heartbeat = heartbeat

    def preamble(self) -> bytes:
        return retry_field(RETRY_MILLISECONDS).encode()

    def render(self, events: Iterator[StreamEvent]) -> Iterator[bytes]:
        last_sent = time.monotonic()
        for event in events:
            if isinstance(event, Idle):
                if time.monotonic() - last_sent >= self._heartbeat:
                    yield comment("keep-alive").encode()
                    last_sent = time.monotonic()
            elif isinstance(event, StreamEnd):
                yield self._final_event(event).encode()
                return
            else:
                yield from join_pieces(
                    chunk_event(text, seq) for seq, text in _numbered(event)
                )
                last_sent = time.monotonic()

    def failure(self) -> bytes:
        return b""

    def _final_event(self, end: StreamEnd) -> str:
        if end.position is None or end.position < self._start:
            return ""
        if end.result_json is not None:
            return result_event(end.result_json, end.position)
        return error_event(
            end.error_status or "UNKNOWN", end.error_message or "", end.position
        )


class EventStreamBody:
    """The body of an SSE response; closing it releases the subscription.

    A WSGI server closes the body even when it never iterated it, so the
    subscription cannot leak when a client disconnects before the first byte.
    The body also ends, without a final frame, once a wait for a change finds
    the client gone.
    """

    def __init__(
        self,
        flow: DurableFlow[Any, Any],
        subscription: Subscription,
        start: int,
        dialect: Dialect,
        connection: ClientConnection,
    ) -> None:
        self._flow = flow
        self._subscription = subscription
        self._start = start
        self._dialect = dialect
        self._connection = connection
        self._lock = threading.Lock()

    def __iter__(self) -> Iterator[bytes]:
        yield self._dialect.preamble()
        events = self._flow.manager.follow(
            self._subscription, self._start, self._flow.options
        )
        try:
            yield from self._dialect.render(self._while_connected(events))
        except Exception:
            logger.exception(
                "Following the stream failed",
                extra={"stream_id": self._subscription.stream_id},
            )
            yield self._dialect.failure()
        finally:
            self.close()

    def close(self) -> None:
        with self._lock:
            self._subscription.close()

    def _while_connected(self, events: Iterator[StreamEvent]) -> Iterator[StreamEvent]:
        for event in events:
            if isinstance(event, Idle) and self._connection.closed():
                logger.info(
                    "Client disconnected; stopped following the stream",
                    extra={"stream_id": self._subscription.stream_id},
                )
                return
            yield event


def join_pieces(frames: Iterable[str]) -> Iterator[bytes]:
    """Join frames into pieces of about `WRITE_BYTES` each."""
    piece: list[str] = []
    size = 0
    for frame in frames:
        piece.append(frame)
        size += len(frame)
        if size >= WRITE_BYTES:
            yield "".join(piece).encode()
            piece, size = [], 0
    if piece:
        yield "".join(piece).encode()


def _numbered(run: ChunkRun) -> Iterator[tuple[int, str]]:
    return enumerate(run.texts, start=run.first)


def _genkit_end(end: StreamEnd) -> str:
    if end.result_json is not None:
        return result_frame(end.result_json)
    return error_frame(end.error_status or "UNKNOWN", end.error_message or "")
