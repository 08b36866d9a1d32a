"""Flows the tests serve, next to the real countdown, from one target `app`.

`app` routes by the first path segment to a flow, so one server process
serves them all. `GET /__commits?stream=ID` lists every Firestore write the
server made for a stream, so tests can count writes per document, and
`GET /__listeners` returns how many Firestore listeners the server has open.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import flask

from countdown import countdown_flow
from durable_streams import DurableFlow, FlowContext, FlowError
from durable_streams.logs import configure_logging
from durable_streams.runtime import get_runtime

configure_logging()
logger = logging.getLogger(__name__)

_commits: dict[str, list[dict[str, Any]]] = {}
_commits_lock = threading.Lock()


def _record_commit(stream_id: str, paths: Any) -> None:
    with _commits_lock:
        _commits.setdefault(stream_id, []).append(
            {"time": time.monotonic(), "paths": list(paths)}
        )


get_runtime().commit_observers.append(_record_commit)


def fail(data: dict[str, Any], context: FlowContext) -> None:
    """Send `after` chunks, then raise a FlowError with the given status."""
    for index in range(data.get("after", 0)):
        context.send_chunk(index)
        context.sleep(data.get("tick", 0))
    raise FlowError(
        data.get("message", "failed on purpose"), status=data.get("status", "ABORTED")
    )


def crash(data: Any, context: FlowContext) -> None:
    """Send one chunk, then raise an unexpected error with internal details."""
    context.send_chunk("before the crash")
    raise RuntimeError("secret internal detail: password=hunter2 at /srv/app.py")


def blast(data: dict[str, Any], context: FlowContext) -> dict[str, int]:
    """Send `count` chunks of about `size` bytes as fast as possible."""
    count = data["count"]
    padding = "x" * data.get("size", 0)
    for index in range(context.position, count):
        context.send_chunk({"i": index, "pad": padding})
    return {"sent": count}


def ticker(data: dict[str, Any], context: FlowContext) -> str:
    """Send `count` chunks, one per `tick` seconds; not resumable. Logs the
    number of chunks sent when the flow stops, however it stops."""
    sent = 0
    try:
        for index in range(data["count"]):
            context.sleep(data.get("tick", 0.1))
            context.send_chunk(index)
            sent += 1
    finally:
        logger.info(
            "ticker flow stopped after %d chunks",
            sent,
            extra={"stream_id": context.stream_id},
        )
    return "ticked"


def echo(data: Any, context: FlowContext) -> Any:
    """Send the input as one chunk and return it."""
    context.send_chunk(data)
    return data


def think(data: dict[str, Any], context: FlowContext) -> str:
    """Stay silent for `seconds`, then send one chunk."""
    context.sleep(data["seconds"])
    context.send_chunk("thought")
    return "done"


FLOWS: dict[str, DurableFlow[Any, Any]] = {
    flow.name: flow
    for flow in (
        countdown_flow,
        DurableFlow(fail),
        DurableFlow(crash),
        DurableFlow(blast, resumable=True),
        DurableFlow(think),
        DurableFlow(ticker),
        DurableFlow(echo),
    )
}


def app(request: flask.Request) -> flask.Response:
    name = request.path.strip("/").split("/")[0]
    if name == "__commits":
        with _commits_lock:
            return flask.jsonify(_commits.get(request.args.get("stream", ""), []))
    if name == "__listeners":
        return flask.jsonify(get_runtime().listener_count)
    flow = FLOWS.get(name)
    if flow is None:
        return flask.Response(f"no flow named {name!r}", status=404)
    return flow.handle(request)
