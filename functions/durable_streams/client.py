"""A Python client for durable flows that resumes by itself after a drop.

    from durable_streams.client import FlowClient

    client = FlowClient(
        "https://REGION-PROJECT.cloudfunctions.net/countdown",
        headers=lambda: {"Authorization": f"Bearer {id_token()}"},
    )
    stream = client.stream(5)
    for chunk in stream:
        print(stream.position - 1, chunk)
    print(stream.result)

The client speaks Genkit's dialect. When the connection drops before the
final frame, it reconnects with the stream id and ``Last-Event-ID`` after an
exponential backoff, and yields every chunk exactly once and in order. Each
chunk frame's ``seq`` is its position; a server that sends no ``seq`` and
replays from the first chunk (as Genkit's own servers do) is handled by
counting, and the chunks already yielded are skipped.

Run ``python -m durable_streams.client --help`` for the command-line use.
"""

from __future__ import annotations

import argparse
import codecs
import json
import logging
import random
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import requests
from urllib3.exceptions import NewConnectionError

from .errors import DurableStreamError, FlowError, Unavailable
from .sse import LAST_EVENT_ID_HEADER
from .wire import EVENT_STREAM, STREAM_ID_HEADER

logger = logging.getLogger(__name__)

Headers = Mapping[str, str] | Callable[[], Mapping[str, str]]
"""Extra request headers, or a function called before every request that
returns them (for an ID token that must be refreshed)."""

RETRIED_STATUSES: Final = frozenset({429, 500, 502, 503, 504})
START_RETRIED_STATUSES: Final = frozenset({429, 503})


class StreamNotFound(FlowError):
    """The server does not know the stream: a wrong id, or it expired."""

    status = "NOT_FOUND"


class ProtocolError(DurableStreamError):
    """The server sent something that is not a valid Genkit frame."""


@dataclass(frozen=True)
class RetryPolicy:
    """When and how often the client reconnects after a failure.

    The n-th attempt in a row waits ``initial_delay * multiplier**n`` seconds,
    at most `max_delay`, each shortened by a random factor from 0.5 to 1 so
    that many clients do not reconnect in step. The client gives up with
    `Unavailable` after `deadline` seconds of failures without a new chunk.
    """

    initial_delay: float = 0.5
    max_delay: float = 10.0
    multiplier: float = 2.0
    deadline: float = 120.0

    def delay(self, attempt: int) -> float:
        """Return the wait before the `attempt`-th retry in a row (from 0)."""
        base = min(self.max_delay, self.initial_delay * self.multiplier**attempt)
        return base * random.uniform(0.5, 1.0)


class FlowClient:
    """Calls one durable flow at `url`.

    `timeout` is (connect, read) in seconds. The read timeout must exceed the
    server's stream timeout (60 s by default), because Genkit's dialect sends
    nothing while a flow is silent.
    """

    def __init__(
        self,
        url: str,
        *,
        headers: Headers | None = None,
        timeout: tuple[float, float] = (10.0, 90.0),
        retry: RetryPolicy | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self._headers = headers
        self._session = session or requests.Session()

    def stream(self, data: Any = None, *, init: Any = None) -> DurableStream:
        """Start the flow with input `data` and return its stream, connected."""
        body: dict[str, Any] = {"data": data}
        if init is not None:
            body["init"] = init
        stream = DurableStream(self, None, 0)
        stream.connect_start(body)
        return stream

    def resume(self, stream_id: str, *, after: int | None = None) -> DurableStream:
        """Follow an existing stream, from the chunk after position `after`,
        or from the first chunk; the connection opens on the first read."""
        start = 0 if after is None else after + 1
        return DurableStream(self, stream_id, start)

    def post(
        self, body: Mapping[str, Any], headers: Mapping[str, str]
    ) -> requests.Response:
        """Send one streaming request with the caller's extra headers."""
        extra = self._headers() if callable(self._headers) else self._headers
        all_headers = {
            "Accept": EVENT_STREAM,
            "Content-Type": "application/json",
            **(extra or {}),
            **headers,
        }
        return self._session.post(
            self.url,
            data=json.dumps(body),
            headers=all_headers,
            timeout=self.timeout,
            stream=True,
        )

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> FlowClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class DurableStream:
    """The chunks of one stream, as an iterator that survives dropped
    connections.

    `position` is the number of chunks yielded so far, so the chunk yielded
    last is at ``position - 1``. `result` is the flow's output once the
    iteration ended; a failed flow raises `FlowError` with its status. The
    retry deadline counts from the first failure after the last chunk or
    successful connection.
    """

    def __init__(self, client: FlowClient, stream_id: str | None, start: int) -> None:
        self.stream_id = stream_id
        self.position = start
        self.result: Any = None
        self.done = False
        self.reconnects = 0
        self._client = client
        self._response: requests.Response | None = None
        self._failures = 0
        self._failing_since: float | None = None

    def connect_start(self, body: Mapping[str, Any]) -> None:
        """Send the request that starts the flow, retrying only failures that
        cannot have started it (no connection, or 429 or 503)."""
        while True:
            try:
                response = self._client.post(body, {})
            except requests.ConnectionError as error:
                if not _was_not_sent(error):
                    raise Unavailable(f"Starting the flow failed: {error}") from error
                self._wait_before_retry(error)
                continue

            if response.status_code in START_RETRIED_STATUSES:
                self._wait_before_retry(_status_error(response))
                continue
            self._accept(response)
            return

    def __iter__(self) -> Iterator[Any]:
        try:
            while not self.done:
                try:
                    if self._response is None:
                        self._reconnect()
                    yield from self._read()
                except (requests.RequestException, _Dropped) as error:
                    self._drop()
                    self._wait_before_retry(error)
        finally:
            # Also when the caller stops early: iterating again reconnects.
            self._drop()

    def close(self) -> None:
        """Close the open connection, if any; iterating again reconnects."""
        self._drop()

    def _reconnect(self) -> None:
        headers = {STREAM_ID_HEADER: self.stream_id or ""}
        if self.position > 0:
            headers[LAST_EVENT_ID_HEADER] = str(self.position - 1)

        response = self._client.post({}, headers)
        if response.status_code in RETRIED_STATUSES:
            raise _Dropped(_status_error(response))
        self.reconnects += 1
        self._accept(response)

    def _accept(self, response: requests.Response) -> None:
        """Keep a 200 response, or raise the error a 204 or 4xx stands for."""
        if response.status_code == 204:
            response.close()
            raise StreamNotFound(
                f"Stream {self.stream_id!r} was not found; it may have expired."
            )
        if response.status_code != 200:
            raise _error_of(response)

        self.stream_id = response.headers.get(STREAM_ID_HEADER) or self.stream_id
        self._response = response
        self._failing_since = None
        logger.info(
            "Connected to stream at position %d",
            self.position,
            extra={"stream_id": self.stream_id},
        )

    def _read(self) -> Iterator[Any]:
        """Yield the new chunks of the open response until its final frame."""
        assert self._response is not None
        replayed = 0
        for frame in _frames(self._response):
            if "message" in frame:
                seq = frame.get("seq", replayed)
                replayed += 1
                if self._accept_chunk(seq):
                    yield frame["message"]
            elif "result" in frame:
                self.result = frame["result"]
                self.done = True
                return
            elif "error" in frame:
                self.done = True
                raise _flow_error(frame["error"])
            else:
                raise ProtocolError(f"unknown frame: {json.dumps(frame)[:200]}")
        raise _Dropped("the response ended before the final frame")

    def _accept_chunk(self, seq: Any) -> bool:
        """Tell whether the chunk at `seq` is the next one to yield."""
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise ProtocolError(f"a chunk frame has an invalid seq: {seq!r}")
        if seq < self.position:
            return False
        if seq > self.position:
            raise ProtocolError(
                f"chunk {seq} arrived where chunk {self.position} was expected "
                f"on stream {self.stream_id!r}"
            )

        self.position += 1
        self._failures = 0
        self._failing_since = None
        return True

    def _wait_before_retry(self, error: object) -> None:
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
        policy = self._client.retry
        if now - self._failing_since >= policy.deadline:
            raise Unavailable(
                f"Stream {self.stream_id!r} could not be reached for "
                f"{policy.deadline:.0f} s; last error: {error}"
            )

        delay = policy.delay(self._failures)
        self._failures += 1
        logger.warning(
            "Connection failed (%s); retrying at position %d in %.2f s",
            error,
            self.position,
            delay,
            extra={"stream_id": self.stream_id},
        )
        time.sleep(delay)

    def _drop(self) -> None:
        if self._response is not None:
            self._response.close()
            self._response = None


class _Dropped(Exception):
    """The connection ended or failed in a way a reconnect can mend."""


def _frames(response: requests.Response) -> Iterator[dict[str, Any]]:
    """Yield the JSON objects of a response's frames as they arrive."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    buffer = ""
    for data in response.iter_content(chunk_size=None):
        buffer += decoder.decode(data).replace("\r\n", "\n")
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            payload = _payload(block)
            if payload is not None:
                yield payload


def _payload(block: str) -> dict[str, Any] | None:
    """Return the JSON object of one frame, or None for a frame without data.

    Genkit's Express server writes error frames as ``error: {...}``, so that
    field counts as data too.
    """
    lines = [
        line.partition(":")[2].removeprefix(" ")
        for line in block.split("\n")
        if line.startswith(("data:", "error:"))
    ]
    if not lines:
        return None

    try:
        payload = json.loads("\n".join(lines))
    except ValueError as error:
        raise ProtocolError(f"a frame is not JSON ({error}): {block[:200]!r}") from None
    if not isinstance(payload, dict):
        raise ProtocolError(f"a frame is not a JSON object: {block[:200]!r}")
    return payload


def _flow_error(error: Any) -> FlowError:
    if not isinstance(error, dict):
        return FlowError(str(error))
    return FlowError(
        str(error.get("message", "")), status=str(error.get("status", "UNKNOWN"))
    )


def _error_of(response: requests.Response) -> FlowError:
    """Return the error a failed response carries as a Genkit error object."""
    try:
        body = response.json()
    except ValueError:
        body = None
    finally:
        response.close()

    if isinstance(body, dict) and "error" in body:
        return _flow_error(body["error"])
    return FlowError(
        f"The server returned HTTP {response.status_code} {response.reason}.",
        status="UNKNOWN",
    )


def _status_error(response: requests.Response) -> str:
    response.close()
    return f"HTTP {response.status_code} {response.reason}"


def _was_not_sent(error: requests.ConnectionError) -> bool:
    """Tell whether a connection error happened before the request was sent."""
    if isinstance(error, requests.ConnectTimeout):
        return True
    reason = getattr(error.args[0], "reason", None) if error.args else None
    return isinstance(reason, NewConnectionError)


def main(argv: Sequence[str] | None = None) -> int:
    """Start or resume a stream and print its frames as JSON lines."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    headers = dict(_header(value) for value in args.header)

    try:
        data = json.loads(args.data)
    except ValueError as error:
        print(f"error: the input is not valid JSON: {error}", file=sys.stderr)
        return 2

    stream: DurableStream | None = None
    with FlowClient(args.url, headers=headers) as client:
        try:
            if args.stream_id:
                stream = client.resume(args.stream_id, after=args.after)
            else:
                stream = client.stream(data)
                print(f"stream id: {stream.stream_id}", file=sys.stderr)
            for chunk in stream:
                print(json.dumps({"seq": stream.position - 1, "message": chunk}))
            print(json.dumps({"result": stream.result}))
        except FlowError as error:
            print(f"error: {error.status}: {error.message}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            _print_resume_hint(args.url, stream)
            return 130
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m durable_streams.client",
        description="Start a durable flow, or resume one of its streams, and "
        "print each chunk as a JSON line; reconnects by itself after a drop.",
    )
    parser.add_argument("url", help="the flow's URL")
    parser.add_argument(
        "data", nargs="?", default="null", help="the flow input as JSON (default: null)"
    )
    parser.add_argument(
        "--stream-id", help="resume this stream instead of starting one"
    )
    parser.add_argument(
        "--after",
        type=int,
        help="with --stream-id: the last chunk position already seen",
    )
    parser.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        help="an extra request header, 'Name: value' (repeatable)",
    )
    return parser


def _header(value: str) -> tuple[str, str]:
    name, separator, content = value.partition(":")
    if not separator or not name.strip():
        raise SystemExit(
            f"error: a header must look like 'Name: value', got: {value!r}"
        )
    return name.strip(), content.strip()


def _print_resume_hint(url: str, stream: DurableStream | None) -> None:
    if stream is None or stream.stream_id is None:
        return
    after = f" --after {stream.position - 1}" if stream.position > 0 else ""
    print(
        f"stopped; resume with: {url} --stream-id {stream.stream_id}{after}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    sys.exit(main())
