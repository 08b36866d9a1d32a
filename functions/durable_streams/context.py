"""What a flow receives besides its input: a way to send chunks, the stream
position it starts at, and cancellation."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from .errors import Cancelled


class FlowContext:
    """The handle a running flow uses to send chunks and notice cancellation.

    `position` is the number of chunks the stream already holds when the flow
    starts: 0 for a new stream, and the committed count when another instance
    resumes a stream whose producer died. A resumable flow continues from
    there and must send exactly the chunks that follow.
    """

    def __init__(
        self,
        *,
        send: Callable[[Any], None],
        cancelled: threading.Event,
        stream_id: str | None = None,
        position: int = 0,
        owner: str | None = None,
    ) -> None:
        self._send = send
        self._cancelled = cancelled
        self.stream_id = stream_id
        self.position = position
        self.owner = owner

    def send_chunk(self, chunk: Any) -> None:
        """Send one JSON-serializable chunk to every reader of the stream.

        Raises `Cancelled` once the stream is cancelled, and
        `ResourceExhausted` for a chunk over the size limit. Blocks while too
        many chunks wait to be written.
        """
        self._send(chunk)

    @property
    def cancelled(self) -> bool:
        """Whether the flow should stop because the stream was cancelled."""
        return self._cancelled.is_set()

    def raise_if_cancelled(self) -> None:
        if self._cancelled.is_set():
            raise Cancelled()

    def sleep(self, seconds: float) -> None:
        """Wait `seconds`, or raise `Cancelled` as soon as the stream is cancelled."""
        if self._cancelled.wait(max(seconds, 0.0)):
            raise Cancelled()
