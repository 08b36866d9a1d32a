"""A client for Genkit's durable streaming frames, strict about the bytes."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from durable_streams.wire import STREAM_ID_HEADER

SSE_HEADERS = {"Accept": "text/event-stream", "Content-Type": "application/json"}


class FrameFormatError(AssertionError):
    """The server sent bytes that are not a Genkit frame."""


def parse_frame(raw: str) -> dict[str, Any]:
    """Parse one frame exactly as Genkit's JS client does, checking its form."""
    if not raw.startswith("data: "):
        raise FrameFormatError(f"frame does not start with 'data: ': {raw[:80]!r}")
    body = raw[len("data: ") :]
    if "\n" in body or "\r" in body:
        raise FrameFormatError(f"frame spans several lines: {raw[:80]!r}")
    payload: dict[str, Any] = json.loads(body)
    return payload


def iter_frames(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """Yield the frames of a streaming response as they arrive."""
    buffer = ""
    for text in response.iter_text():
        buffer += text
        while "\n\n" in buffer:
            raw, buffer = buffer.split("\n\n", 1)
            yield parse_frame(raw)
    if buffer:
        raise FrameFormatError(f"response ended inside a frame: {buffer[:80]!r}")


@dataclass
class StreamResult:
    """Everything one streaming response delivered."""

    status_code: int
    stream_id: str | None
    headers: httpx.Headers
    frames: list[dict[str, Any]] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    """`time.monotonic()` when each frame arrived."""

    @property
    def chunks(self) -> list[Any]:
        return [frame["message"] for frame in self.frames if "message" in frame]

    @property
    def seqs(self) -> list[int]:
        return [frame["seq"] for frame in self.frames if "message" in frame]

    @property
    def final(self) -> dict[str, Any] | None:
        finals = [
            frame for frame in self.frames if "result" in frame or "error" in frame
        ]
        return finals[-1] if finals else None

    def assert_one_final_frame_last(self) -> None:
        finals = [
            frame for frame in self.frames if "result" in frame or "error" in frame
        ]
        assert len(finals) == 1, f"expected exactly one final frame, got {finals}"
        assert self.frames[-1] is finals[0], "the final frame is not the last frame"


def request_parts(
    data: Any, stream_id: str | None
) -> tuple[dict[str, str], dict[str, Any]]:
    """Return the headers and JSON body of a request that starts a stream
    with input `data`, or reconnects to stream `stream_id`."""
    headers = dict(SSE_HEADERS)
    if stream_id is None:
        return headers, {"data": data}
    headers[STREAM_ID_HEADER] = stream_id
    return headers, {}


def stream(
    url: str,
    data: Any = None,
    *,
    stream_id: str | None = None,
    max_frames: int | None = None,
    timeout: float = 60.0,
    headers: dict[str, str] | None = None,
) -> StreamResult:
    """Start (or, with `stream_id`, reconnect to) a stream and read it.

    With `max_frames`, the connection is dropped after that many frames.
    """
    request_headers, body = request_parts(data, stream_id)
    request_headers.update(headers or {})

    with (
        httpx.Client(timeout=timeout) as client,
        client.stream("POST", url, json=body, headers=request_headers) as response,
    ):
        result = StreamResult(
            response.status_code,
            response.headers.get(STREAM_ID_HEADER),
            response.headers,
        )
        if response.status_code != 200:
            response.read()
            return result
        if max_frames == 0:
            return result
        for frame in iter_frames(response):
            result.frames.append(frame)
            result.arrivals.append(time.monotonic())
            if max_frames is not None and len(result.frames) >= max_frames:
                break
    return result
