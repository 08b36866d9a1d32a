"""HTTP handling of a durable flow: start, reconnect, or a plain call.

Request checks happen before anything reaches Firestore, and every failure
is answered with a Genkit error object and never with a traceback.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import flask

from .auth import Caller, authenticate
from .context import FlowContext
from .errors import FlowError
from .hub import Subscription
from .layout import stored_size
from .limits import load_json, running_flows
from .producer import INTERNAL_MESSAGE, encode_output
from .store import is_transient
from .streams import ChunkRun, StreamEnd, StreamEvent
from .wire import (
    EVENT_STREAM,
    STREAM_ID_HEADER,
    accepts_event_stream,
    chunk_frame,
    encode_json,
    error_frame,
    error_json,
    http_status,
    is_valid_stream_id,
    result_frame,
)

if TYPE_CHECKING:
    from .config import StreamOptions
    from .flow import DurableFlow

logger = logging.getLogger(__name__)

WRITE_BYTES = 64 * 1024
"""Frames are joined into pieces of about this size before they are sent."""

JSON_TYPES = ("application/json",)


class HttpError(Exception):
    """A request that is answered with an error before any flow runs."""

    def __init__(self, http_code: int, status: str, message: str) -> None:
        super().__init__(message)
        self.http_code = http_code
        self.status = status
        self.message = message

    @classmethod
    def of(cls, error: FlowError) -> HttpError:
        """Return the error response for a request that failed with `error`."""
        return cls(http_status(error.status), error.status, error.message)


def serve(flow: DurableFlow[Any, Any], request: flask.Request) -> flask.Response:
    """Answer one request to a durable flow."""
    try:
        return _dispatch(flow, request)
    except HttpError as error:
        logger.info(
            "Rejected %s request: %s",
            request.method,
            error.message,
            extra={"flow": flow.name},
        )
        return error_response(error.http_code, error.status, error.message)
    except Exception:
        logger.exception(
            "Request failed",
            extra={"flow": flow.name, "stream_id": _stream_id_for_logs(request)},
        )
        return error_response(500, "INTERNAL", INTERNAL_MESSAGE)


def error_response(http_code: int, status: str, message: str) -> flask.Response:
    response = flask.Response(
        error_json(status, message), status=http_code, content_type="application/json"
    )
    if http_code == 405:
        response.headers["Allow"] = "POST, OPTIONS"
    if status == "UNAUTHENTICATED":
        response.headers["WWW-Authenticate"] = 'Bearer realm="durable-streams"'
    return response


def _stream_id_for_logs(request: flask.Request) -> str | None:
    stream_id = request.headers.get(STREAM_ID_HEADER, "").strip()
    return stream_id if is_valid_stream_id(stream_id) else None


def _caller(flow: DurableFlow[Any, Any], request: flask.Request) -> Caller:
    try:
        return authenticate(request, flow.options)
    except FlowError as error:
        raise HttpError.of(error) from None


def _dispatch(flow: DurableFlow[Any, Any], request: flask.Request) -> flask.Response:
    if request.method != "POST":
        raise HttpError(
            405,
            "INVALID_ARGUMENT",
            f"Method {request.method} is not allowed; use POST.",
        )

    caller = _caller(flow, request)
    streaming = accepts_event_stream(request.headers.get("Accept")) or (
        request.args.get("stream") == "true"
    )
    stream_id = request.headers.get(STREAM_ID_HEADER)

    if stream_id is not None:
        if not streaming:
            raise HttpError(
                400,
                "INVALID_ARGUMENT",
                f"A request with {STREAM_ID_HEADER} reconnects to a stream and needs "
                f"'Accept: {EVENT_STREAM}'; the flow was not run again.",
            )
        return _reconnect(flow, stream_id.strip(), caller)

    data = _read_data(request, flow.options)
    try:
        input_value = flow.parse_input(data)
    except FlowError as error:
        raise HttpError.of(error) from None

    if streaming:
        return _start(flow, input_value, encode_json(data), caller)
    return _call(flow, input_value, caller)


def _read_data(request: flask.Request, options: StreamOptions) -> Any:
    """Return the `data` of a JSON request body, or None for an empty body."""
    limit = options.max_request_bytes
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    body = request.stream.read(limit + 1)
    if len(body) > limit:
        raise _too_large(limit)
    if not body.strip():
        return None

    mimetype = request.mimetype
    if mimetype and mimetype not in JSON_TYPES and not mimetype.endswith("+json"):
        raise HttpError(
            415,
            "INVALID_ARGUMENT",
            f"Content-Type {mimetype[:100]!r} is not supported; "
            "send 'application/json'.",
        )

    try:
        payload = load_json(body, options.max_json_depth)
    except FlowError as error:
        raise HttpError.of(error) from None

    if not isinstance(payload, dict):
        raise HttpError(
            400,
            "INVALID_ARGUMENT",
            'The request body must be a JSON object such as {"data": ...}.',
        )
    return payload.get("data")


def _too_large(limit: int) -> HttpError:
    return HttpError(
        413,
        "RESOURCE_EXHAUSTED",
        f"The request body exceeds the limit of {limit} bytes.",
    )


def _start(
    flow: DurableFlow[Any, Any], input_value: Any, input_json: str, caller: Caller
) -> flask.Response:
    try:
        subscription = flow.manager.start(flow, input_value, input_json, caller=caller)
    except FlowError as error:
        raise HttpError.of(error) from None
    except Exception:
        logger.exception("Creating the stream record failed", extra={"flow": flow.name})
        raise HttpError(
            503, "UNAVAILABLE", "The stream could not be created; try again."
        ) from None
    return _event_stream(flow, subscription, 0)


def _reconnect(
    flow: DurableFlow[Any, Any], stream_id: str, caller: Caller
) -> flask.Response:
    if not is_valid_stream_id(stream_id):
        logger.info("Reconnect with a malformed stream id", extra={"flow": flow.name})
        return flask.Response(status=204)

    try:
        subscription = flow.manager.subscribe(stream_id, caller=caller)
    except Exception as error:
        if not is_transient(error):
            raise
        logger.warning(
            "Reading the stream failed: %r", error, extra={"stream_id": stream_id}
        )
        raise HttpError(
            503, "UNAVAILABLE", "The stream cannot be read right now; try again."
        ) from None
    if subscription is None:
        logger.info(
            "Reconnect to an unknown or inaccessible stream",
            extra={"stream_id": stream_id},
        )
        return flask.Response(status=204)

    logger.info(
        "Reconnected to stream", extra={"stream_id": stream_id, "flow": flow.name}
    )
    return _event_stream(flow, subscription, 0)


def _event_stream(
    flow: DurableFlow[Any, Any], subscription: Subscription, start: int
) -> flask.Response:
    body = EventStreamBody(flow, subscription, start)
    response = flask.Response(body, status=200, content_type=EVENT_STREAM)
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"
    response.headers[STREAM_ID_HEADER] = subscription.stream_id
    return response


class EventStreamBody:
    """The body of an SSE response; closing it releases the subscription.

    A WSGI server closes the body even when it never iterated it, so the
    subscription cannot leak when a client disconnects before the first byte.
    """

    def __init__(
        self, flow: DurableFlow[Any, Any], subscription: Subscription, start: int
    ) -> None:
        self._flow = flow
        self._subscription = subscription
        self._start = start
        self._lock = threading.Lock()

    def __iter__(self) -> Iterator[bytes]:
        # An empty first piece makes the server send the headers at once, so
        # a client that drops before the first chunk still has the stream id.
        yield b""
        events = self._flow.manager.follow(
            self._subscription, self._start, self._flow.options
        )
        try:
            yield from render(events)
        except Exception:
            logger.exception(
                "Following the stream failed",
                extra={"stream_id": self._subscription.stream_id},
            )
            yield error_frame("INTERNAL", INTERNAL_MESSAGE).encode()
        finally:
            self.close()

    def close(self) -> None:
        with self._lock:
            self._subscription.close()


def render(events: Iterator[StreamEvent]) -> Iterator[bytes]:
    """Turn stream events into Genkit frames, joined into pieces of ~64 KiB."""
    for event in events:
        if isinstance(event, StreamEnd):
            yield _end_frame(event).encode()
            return
        yield from _chunk_pieces(event)


def _chunk_pieces(run: ChunkRun) -> Iterator[bytes]:
    piece: list[str] = []
    size = 0
    for offset, text in enumerate(run.texts):
        frame = chunk_frame(text, run.first + offset)
        piece.append(frame)
        size += len(frame)
        if size >= WRITE_BYTES:
            yield "".join(piece).encode()
            piece, size = [], 0
    if piece:
        yield "".join(piece).encode()


def _end_frame(end: StreamEnd) -> str:
    if end.result_json is not None:
        return result_frame(end.result_json)
    return error_frame(end.error_status or "UNKNOWN", end.error_message or "")


def _call(
    flow: DurableFlow[Any, Any], input_value: Any, caller: Caller
) -> flask.Response:
    """Run the flow in this request and answer its output as JSON."""
    try:
        slot = running_flows.acquire(caller.uid, flow.options)
    except FlowError as error:
        raise HttpError.of(error) from None

    with slot:
        return _run_call(flow, input_value)


def _run_call(flow: DurableFlow[Any, Any], input_value: Any) -> flask.Response:
    def check_chunk(chunk: Any) -> None:
        size = stored_size(encode_json(chunk))
        if size > flow.options.max_chunk_bytes:
            raise FlowError(
                f"A chunk of {size} bytes exceeds the limit of "
                f"{flow.options.max_chunk_bytes} bytes.",
                status="RESOURCE_EXHAUSTED",
            )

    context = FlowContext(send=check_chunk, cancelled=threading.Event())
    try:
        output_json = encode_output(flow.fn(input_value, context), flow.options)
    except FlowError as error:
        return error_response(http_status(error.status), error.status, error.message)
    except Exception:
        logger.exception("Flow raised an unexpected error", extra={"flow": flow.name})
        return error_response(500, "INTERNAL", INTERNAL_MESSAGE)

    return flask.Response(
        f'{{"result":{output_json}}}', status=200, content_type="application/json"
    )
