"""A streaming client that timestamps every frame it receives.

Both servers speak Genkit's durable streaming: `data: {"message": ...}` for a
chunk, `data: {"result": ...}` at the end. Genkit's server writes a failure as
`error: {...}` instead of `data: {"error": ...}`; both count as the final
frame here.
"""

from __future__ import annotations

import datetime
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

STREAM_ID_HEADER = "X-Genkit-Stream-Id"
SSE_HEADERS = {"Accept": "text/event-stream", "Content-Type": "application/json"}
CHUNK_PREFIX = b'data: {"message":'

NO_CONTENT_RETRY_SECONDS = 10.0
"""Seconds a reader retries a reconnect that returns 204, because Genkit's
server sends the stream id before the stream document exists."""


@dataclass
class Reading:
    """The frames of one streaming response and when they arrived."""

    started: float
    """`time.time()` when the request was sent."""
    status: int = 0
    stream_id: str | None = None
    arrivals: list[float] = field(default_factory=list)
    """`time.time()` when each chunk frame arrived."""
    sent: list[float] = field(default_factory=list)
    """The producer's timestamp of each chunk, when parsed."""
    chunk_count: int = 0
    final: dict[str, Any] | None = None
    ended: float = 0.0
    failure: str | None = None
    no_content_retries: int = 0

    @property
    def duration(self) -> float:
        return self.ended - self.started

    @property
    def succeeded(self) -> bool:
        return self.final is not None and "result" in self.final

    @property
    def latencies(self) -> list[float]:
        """Seconds from each chunk's timestamp to its arrival."""
        return [
            arrival - sent
            for arrival, sent in zip(self.arrivals, self.sent, strict=True)
        ]

    def outcome(self) -> str:
        """Describe how the response ended, in a few words."""
        if self.failure is not None:
            return self.failure
        if self.final is None:
            return "ended without a final frame"
        if "result" in self.final:
            return "result"
        return f"error frame {json.dumps(self.final)[:160]}"


def start_stream(
    url: str,
    data: Any,
    *,
    parse: bool = True,
    read_timeout: float = 30.0,
    on_stream_id: Callable[[str], None] | None = None,
) -> Reading:
    """Start a stream, read it to its end, and return what arrived."""
    return _read(url, {"data": data}, {}, parse, read_timeout, on_stream_id)


def follow_stream(
    url: str,
    stream_id: str,
    *,
    parse: bool = True,
    read_timeout: float = 30.0,
) -> Reading:
    """Reconnect to a stream by id and read it to its end.

    A 204 is retried for `NO_CONTENT_RETRY_SECONDS`, then returned.
    """
    give_up_at = time.monotonic() + NO_CONTENT_RETRY_SECONDS
    retries = 0
    while True:
        reading = _read(
            url, {}, {STREAM_ID_HEADER: stream_id}, parse, read_timeout, None
        )
        if reading.status != 204 or time.monotonic() >= give_up_at:
            reading.no_content_retries = retries
            return reading
        retries += 1
        time.sleep(0.02)


def _read(
    url: str,
    body: dict[str, Any],
    headers: dict[str, str],
    parse: bool,
    read_timeout: float,
    on_stream_id: Callable[[str], None] | None,
) -> Reading:
    reading = Reading(started=time.time())
    timeout = httpx.Timeout(10.0, read=read_timeout)
    try:
        with (
            httpx.Client(timeout=timeout) as client,
            client.stream(
                "POST", url, json=body, headers={**SSE_HEADERS, **headers}
            ) as response,
        ):
            reading.status = response.status_code
            reading.stream_id = response.headers.get(STREAM_ID_HEADER)
            if reading.status != 200:
                response.read()
                reading.failure = f"HTTP {reading.status}"
                return reading
            if on_stream_id is not None and reading.stream_id:
                on_stream_id(reading.stream_id)
            _read_frames(response, reading, parse)
    except httpx.HTTPError as error:
        reading.failure = f"{type(error).__name__} after {reading.chunk_count} chunks"
    finally:
        reading.ended = time.time()
    return reading


def _read_frames(response: httpx.Response, reading: Reading, parse: bool) -> None:
    buffer = b""
    for data in response.iter_bytes():
        buffer += data
        *frames, buffer = buffer.split(b"\n\n")
        now = time.time()
        for frame in frames:
            if frame.startswith(CHUNK_PREFIX):
                reading.chunk_count += 1
                reading.arrivals.append(now)
                if parse:
                    reading.sent.append(_chunk_timestamp(frame))
            elif frame:
                reading.final = _final(frame)
                return
    if buffer.strip():
        reading.failure = f"ended inside a frame after {reading.chunk_count} chunks"


def _chunk_timestamp(frame: bytes) -> float:
    chunk = json.loads(frame[len(b"data: ") :])["message"]
    return datetime.datetime.fromisoformat(chunk["timestamp"]).timestamp()


def _final(frame: bytes) -> dict[str, Any]:
    prefix, _, body = frame.partition(b": ")
    payload: dict[str, Any] = json.loads(body)
    if prefix == b"error" and "error" not in payload:
        payload = {"error": payload}
    return payload


def in_thread(target: Callable[[], Reading]) -> Callable[[], Reading]:
    """Run `target` in a thread now; return a function that waits for its result."""
    box: list[Reading] = []
    thread = threading.Thread(target=lambda: box.append(target()), daemon=True)
    thread.start()

    def result() -> Reading:
        thread.join()
        return box[0]

    return result
