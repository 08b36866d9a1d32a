"""A client for the standard SSE dialect that parses events as browsers do,
and checks that every line is one this server may send."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx

from durable_streams.wire import STREAM_ID_HEADER

KNOWN_FIELDS = ("id", "event", "data", "retry")


class EventFormatError(AssertionError):
    """The server sent a line that is not valid here."""


@dataclass
class Event:
    """One dispatched event."""

    id: str | None
    event: str
    data: str

    @property
    def json(self) -> Any:
        return json.loads(self.data)


@dataclass
class FollowResult:
    """Everything one standard SSE response delivered."""

    status_code: int
    headers: httpx.Headers
    text: str = ""
    events: list[Event] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    retry: int | None = None

    @property
    def ids(self) -> list[int]:
        return [int(event.id) for event in self.events if event.id is not None]

    @property
    def chunks(self) -> list[Any]:
        return [event.json for event in self.events if event.event == "chunk"]

    @property
    def kinds(self) -> list[str]:
        return [event.event for event in self.events]


def parse_blocks(text: str, result: FollowResult) -> None:
    """Parse complete blocks of SSE text into `result`."""
    if "\r" in text:
        raise EventFormatError("the server sent a carriage return")

    for block in text.split("\n\n"):
        if not block:
            continue
        fields: dict[str, list[str]] = {}
        for line in block.split("\n"):
            if line.startswith(":"):
                result.comments.append(line[1:].strip())
                continue
            name, separator, value = line.partition(":")
            if not separator or name not in KNOWN_FIELDS:
                raise EventFormatError(f"unexpected line: {line!r}")
            fields.setdefault(name, []).append(value.removeprefix(" "))
        _dispatch(fields, result)


def _dispatch(fields: dict[str, list[str]], result: FollowResult) -> None:
    if "retry" in fields:
        result.retry = int(fields["retry"][-1])
    if "data" not in fields:
        return
    if len(fields["data"]) != 1:
        raise EventFormatError(f"an event spans several data lines: {fields}")
    event_id = fields["id"][-1] if "id" in fields else None
    name = fields["event"][-1] if "event" in fields else "message"
    result.events.append(Event(event_id, name, fields["data"][0]))


def follow(
    url: str,
    stream_id: str | None,
    *,
    last_event_id: str | None = None,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 60.0,
) -> FollowResult:
    """GET a stream in the standard SSE dialect and read it to the end."""
    query = dict(params or {})
    if stream_id is not None:
        query["streamId"] = stream_id
    request_headers = {"Accept": "text/event-stream", **(headers or {})}
    if last_event_id is not None:
        request_headers["Last-Event-ID"] = last_event_id

    response = httpx.get(url, params=query, headers=request_headers, timeout=timeout)
    result = FollowResult(response.status_code, response.headers, response.text)
    if response.status_code == 200:
        if not response.text.endswith("\n\n"):
            raise EventFormatError(f"the body ends inside a block: {response.text!r}")
        parse_blocks(response.text, result)
    return result


def start_detached(url: str, data: Any) -> str:
    """Start a stream with ``Prefer: respond-async`` and return its id."""
    response = httpx.post(
        url, json={"data": data}, headers={"Prefer": "respond-async"}, timeout=30
    )
    assert response.status_code == 202, response.text
    stream_id: str = response.headers[STREAM_ID_HEADER]
    return stream_id
