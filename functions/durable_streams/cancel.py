"""HTTP cancellation of a running stream: ``POST <flow URL>/cancel``.

The request names the stream in the ``X-Genkit-Stream-Id`` header and has no
body. A caller that may read a stream may cancel it (see `auth`). The
response is JSON:

- ``200 {"streamId": ..., "status": "cancelled"}`` once the stream has ended;
  a stream that had already ended keeps its status (``done``, ``failed``);
- ``202 {"streamId": ..., "status": "running"}`` when the stream has not ended
  within `END_WAIT` seconds; the cancel request is stored and the stream ends
  as soon as its producer, or the instance that takes it over, sees it;
- ``404 NOT_FOUND`` for an unknown or expired stream, and for a stream the
  caller may not read, so the answer tells nothing about other callers'
  streams; ``400`` without a valid stream id; ``503`` when Firestore cannot
  be reached. The handler answers a method other than POST with ``405`` and
  a rejected ID token with ``401``, as for any request.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import flask

from .auth import Caller
from .store import is_transient
from .wire import STREAM_ID_HEADER, encode_json, error_json, is_valid_stream_id

if TYPE_CHECKING:
    from .flow import DurableFlow

logger = logging.getLogger(__name__)

CANCEL_SEGMENT = "cancel"
"""Last segment of the path of a cancel request."""

END_WAIT = 5.0
"""Seconds a cancel request waits for the stream to end before the response."""


def is_cancel_request(request: flask.Request) -> bool:
    """Tell whether a request is addressed to a flow's cancel endpoint."""
    return request.path.rstrip("/").rsplit("/", 1)[-1] == CANCEL_SEGMENT


def serve_cancel(
    flow: DurableFlow[Any, Any], request: flask.Request, caller: Caller
) -> flask.Response:
    """Cancel one of `flow`'s streams and return the response to the request."""
    stream_id = request.headers.get(STREAM_ID_HEADER, "").strip()
    if not is_valid_stream_id(stream_id):
        return _error(
            400,
            "INVALID_ARGUMENT",
            f"Send the id of the stream to cancel in the {STREAM_ID_HEADER} header.",
        )

    try:
        return _cancel(flow, stream_id, caller)
    except Exception as error:
        if not is_transient(error):
            raise
        logger.warning(
            "Cancelling the stream failed: %r", error, extra={"stream_id": stream_id}
        )
        return _error(503, "UNAVAILABLE", "The stream cannot be cancelled now; retry.")


def _cancel(
    flow: DurableFlow[Any, Any], stream_id: str, caller: Caller
) -> flask.Response:
    manager = flow.manager
    state = manager.cancel(stream_id, caller=caller)
    if state is None:
        logger.info(
            "Cancel of an unknown or inaccessible stream",
            extra={"stream_id": stream_id},
        )
        return _error(404, "NOT_FOUND", "No stream with this id exists any more.")

    latest = manager.wait_for_end(state, flow.options, END_WAIT) or state
    logger.info(
        "Responded to cancel request: stream is %s",
        latest.status,
        extra={"stream_id": stream_id, "flow": flow.name},
    )
    body = encode_json({"streamId": stream_id, "status": latest.status.value})
    return flask.Response(
        body, status=200 if latest.ended else 202, content_type="application/json"
    )


def _error(http_code: int, status: str, message: str) -> flask.Response:
    return flask.Response(
        error_json(status, message), status=http_code, content_type="application/json"
    )
