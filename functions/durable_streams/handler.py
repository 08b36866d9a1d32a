"""HTTP handling of a durable flow: start, reconnect, follow, cancel, or a
plain call.

- ``POST`` starts the flow, or with ``X-Genkit-Stream-Id`` reconnects to its
  stream, in Genkit's dialect; without ``Accept: text/event-stream`` it is a
  plain call, and with ``Prefer: respond-async`` it starts the stream and
  returns 202 at once.
- ``GET ?streamId=ID`` follows a stream in the standard SSE dialect, for
  browsers' `EventSource`.
- A reconnect in either dialect names the last position it saw with
  ``Last-Event-ID`` or ``?lastEventId=N`` and gets what follows.
- ``POST <flow URL>/cancel`` with ``X-Genkit-Stream-Id`` cancels the stream
  (see `cancel`).

Request checks happen before anything reaches Firestore, and every failure
is answered with a Genkit error object and never with a traceback.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import flask

from .auth import Caller, authenticate
from .bodies import Dialect, EventStreamBody, GenkitFrames, StandardEvents
from .cancel import is_cancel_request, serve_cancel
from .connection import ClientConnection, drain_body
from .context import FlowContext
from .errors import FlowError
from .hub import Subscription
from .layout import stored_size
from .limits import load_json, running_flows
from .producer import INTERNAL_MESSAGE, encode_output
from .sse import (
    LAST_EVENT_ID_HEADER,
    LAST_EVENT_ID_PARAMETER,
    STREAM_ID_PARAMETER,
    InvalidPosition,
    parse_position,
)
from .store import is_transient
from .wire import (
    EVENT_STREAM,
    STREAM_ID_HEADER,
    accepts_event_stream,
    encode_json,
    error_json,
    http_status,
    is_valid_stream_id,
    quote_value,
)

if TYPE_CHECKING:
    from .config import StreamOptions
    from .flow import DurableFlow

logger = logging.getLogger(__name__)

JSON_TYPES = ("application/json",)
IDENTITY_CODINGS = ("", "identity")


class HttpError(Exception):
    """A request that is answered with an error before any flow runs."""

    def __init__(
        self,
        http_code: int,
        status: str,
        message: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.http_code = http_code
        self.status = status
        self.message = message
        self.headers = dict(headers or {})

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
        response = error_response(error.http_code, error.status, error.message)
        response.headers.update(error.headers)
        return response
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
        response.headers["Allow"] = "GET, POST, OPTIONS"
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
    if is_cancel_request(request):
        return _cancel(flow, request)

    if request.method == "GET":
        return _follow_standard(flow, request)

    if request.method != "POST":
        raise HttpError(
            405,
            "INVALID_ARGUMENT",
            f"Method {request.method} is not allowed; use POST to start or "
            "reconnect, or GET to follow a stream.",
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
        drain_body(request, flow.options.max_request_bytes)
        return _reconnect(flow, request, stream_id.strip(), caller)

    data = _read_data(request, flow.options)
    try:
        input_value = flow.parse_input(data)
    except FlowError as error:
        raise HttpError.of(error) from None

    if _prefers_async(request):
        return _start_detached(flow, input_value, encode_json(data), caller)
    if streaming:
        return _start(flow, request, input_value, encode_json(data), caller)
    return _call(flow, input_value, caller)


def _cancel(flow: DurableFlow[Any, Any], request: flask.Request) -> flask.Response:
    if request.method != "POST":
        logger.info(
            "Rejected %s request to cancel a stream",
            request.method,
            extra={"flow": flow.name},
        )
        response = error_response(
            405,
            "INVALID_ARGUMENT",
            f"Method {request.method} is not allowed; use POST to cancel a stream.",
        )
        response.headers["Allow"] = "POST, OPTIONS"
        return response
    return serve_cancel(flow, request, _caller(flow, request))


def _start_position(request: flask.Request) -> int:
    """Return the first position the client has not seen: 0 unless the
    request names the last one it saw."""
    value = request.headers.get(LAST_EVENT_ID_HEADER)
    if value is None or not value.strip():
        value = request.args.get(LAST_EVENT_ID_PARAMETER)

    try:
        last_seen = parse_position(value)
    except InvalidPosition as error:
        raise HttpError(
            400, "INVALID_ARGUMENT", f"{str(error).capitalize()}."
        ) from None
    return 0 if last_seen is None else last_seen + 1


def _prefers_async(request: flask.Request) -> bool:
    """Tell whether the request has ``Prefer: respond-async`` (RFC 7240)."""
    for preference in request.headers.get("Prefer", "").split(","):
        token = preference.split(";")[0].split("=")[0]
        if token.strip().lower() == "respond-async":
            return True
    return False


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

    _check_encoding(request)
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


def _check_encoding(request: flask.Request) -> None:
    """Reject a compressed body with 415 and ``Accept-Encoding: identity``,
    which RFC 9110 (section 15.5.16) recommends for an unsupported coding."""
    encoding = request.headers.get("Content-Encoding", "")
    codings = [coding.strip().lower() for coding in encoding.split(",")]
    if all(coding in IDENTITY_CODINGS for coding in codings):
        return

    raise HttpError(
        415,
        "INVALID_ARGUMENT",
        f"Content-Encoding {quote_value(encoding)} is not supported; "
        "send the body uncompressed.",
        headers={"Accept-Encoding": "identity"},
    )


def _too_large(limit: int) -> HttpError:
    return HttpError(
        413,
        "RESOURCE_EXHAUSTED",
        f"The request body exceeds the limit of {limit} bytes.",
    )


def _create_stream(
    flow: DurableFlow[Any, Any], input_value: Any, input_json: str, caller: Caller
) -> Subscription:
    try:
        return flow.manager.start(flow, input_value, input_json, caller=caller)
    except FlowError as error:
        raise HttpError.of(error) from None
    except Exception:
        logger.exception("Creating the stream record failed", extra={"flow": flow.name})
        raise HttpError(
            503, "UNAVAILABLE", "The stream could not be created; try again."
        ) from None


def _start(
    flow: DurableFlow[Any, Any],
    request: flask.Request,
    input_value: Any,
    input_json: str,
    caller: Caller,
) -> flask.Response:
    subscription = _create_stream(flow, input_value, input_json, caller)
    return _event_stream(flow, request, subscription, 0, GenkitFrames())


def _start_detached(
    flow: DurableFlow[Any, Any], input_value: Any, input_json: str, caller: Caller
) -> flask.Response:
    """Start a stream and return 202 with its id, to be followed with GET.

    NOTE: on Cloud Functions with request-based billing, an instance whose
    last request ended gets little CPU, so the flow runs slowly until a
    follower's request lands on that instance or another instance takes the
    stream over when the lease expires.
    """
    subscription = _create_stream(flow, input_value, input_json, caller)
    stream_id = subscription.stream_id
    subscription.close()

    response = flask.Response(
        encode_json({"streamId": stream_id}),
        status=202,
        content_type="application/json",
    )
    response.headers[STREAM_ID_HEADER] = stream_id
    response.headers["Location"] = f"?{STREAM_ID_PARAMETER}={stream_id}"
    response.headers["Preference-Applied"] = "respond-async"
    return response


def _reconnect(
    flow: DurableFlow[Any, Any], request: flask.Request, stream_id: str, caller: Caller
) -> flask.Response:
    start = _start_position(request)
    if not is_valid_stream_id(stream_id):
        logger.info("Reconnect with a malformed stream id", extra={"flow": flow.name})
        return _no_content()

    subscription = _subscribe(flow, stream_id, caller)
    if subscription is None:
        logger.info(
            "Reconnect to an unknown or inaccessible stream",
            extra={"stream_id": stream_id},
        )
        return _no_content()

    logger.info(
        "Reconnected to stream at position %d",
        start,
        extra={"stream_id": stream_id, "flow": flow.name},
    )
    return _event_stream(flow, request, subscription, start, GenkitFrames())


def _subscribe(
    flow: DurableFlow[Any, Any], stream_id: str, caller: Caller
) -> Subscription | None:
    """Subscribe to a stream; a Firestore failure that may pass gets 503."""
    try:
        return flow.manager.subscribe(stream_id, caller=caller)
    except Exception as error:
        if not is_transient(error):
            raise
        logger.warning(
            "Reading the stream failed: %r", error, extra={"stream_id": stream_id}
        )
        raise HttpError(
            503, "UNAVAILABLE", "The stream cannot be read right now; try again."
        ) from None


def _follow_standard(
    flow: DurableFlow[Any, Any], request: flask.Request
) -> flask.Response:
    """Follow a stream in the standard SSE dialect (``GET ?streamId=ID``).

    A client that has seen the final event gets 204, which stops
    `EventSource` from reconnecting.

    NOTE: `EventSource` cannot send an Authorization header, so a browser
    follows this way only streams without an owner; with auth on, clients
    that can send headers follow their own streams here too.
    """
    stream_id = (request.args.get(STREAM_ID_PARAMETER) or "").strip()
    if not stream_id:
        raise HttpError(
            400,
            "INVALID_ARGUMENT",
            "A GET request follows a stream and needs its id: "
            f"?{STREAM_ID_PARAMETER}=<id>. Start a stream with POST.",
        )
    if not is_valid_stream_id(stream_id):
        raise HttpError(
            400, "INVALID_ARGUMENT", f"{quote_value(stream_id)} is not a stream id."
        )
    start = _start_position(request)
    caller = _caller(flow, request)

    subscription = _subscribe(flow, stream_id, caller)
    if subscription is None:
        raise HttpError(
            404,
            "NOT_FOUND",
            f"Stream {stream_id!r} was not found; it may have expired.",
        )

    state = subscription.state
    if state is not None and state.ended and start > state.count:
        subscription.close()
        logger.info(
            "Follower has seen the whole stream", extra={"stream_id": stream_id}
        )
        return _no_content()

    logger.info(
        "Following stream as standard SSE from position %d",
        start,
        extra={"stream_id": stream_id, "flow": flow.name},
    )
    dialect = StandardEvents(start, flow.options.heartbeat)
    return _event_stream(flow, request, subscription, start, dialect)


def _event_stream(
    flow: DurableFlow[Any, Any],
    request: flask.Request,
    subscription: Subscription,
    start: int,
    dialect: Dialect,
) -> flask.Response:
    connection = ClientConnection(request.environ)
    body = EventStreamBody(flow, subscription, start, dialect, connection)
    response = flask.Response(body, status=200, content_type=EVENT_STREAM)
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"
    response.headers[STREAM_ID_HEADER] = subscription.stream_id
    return response


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


def _no_content() -> flask.Response:
    """Return a 204 response, without the Content-Type of a body it lacks."""
    response = flask.Response(status=204)
    del response.headers["Content-Type"]
    return response
