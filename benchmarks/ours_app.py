"""The benchmark's server for this package: a countdown-like flow and a count
of the Firestore writes made for each stream.

`POST /countdown {"data": {"count": N, "rate": R, "lead": S}}` sends N chunks
shaped like the countdown sample's, R per second (0: no delay), after S
seconds. `GET /__writes?stream=ID` returns the commits this process made for
a stream and the documents they wrote, as the store's commit observers report
them (after each commit succeeds).
"""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Sequence
from typing import Any

import flask

from durable_streams import DurableFlow, FlowContext, InvalidArgument
from durable_streams.logs import configure_logging
from durable_streams.runtime import get_runtime

configure_logging()

_writes: dict[str, dict[str, int]] = {}
_writes_lock = threading.Lock()


def _record_commit(stream_id: str, paths: Sequence[str]) -> None:
    with _writes_lock:
        entry = _writes.setdefault(stream_id, {"commits": 0, "documents": 0})
        entry["commits"] += 1
        entry["documents"] += len(paths)


get_runtime().commit_observers.append(_record_commit)


def parse_input(data: Any) -> dict[str, float]:
    """Check the input: a positive `count`, and `rate` and `lead` of 0 or more."""
    if not isinstance(data, dict):
        raise InvalidArgument(f"The input must be an object, got: {data!r}.")
    count = data.get("count")
    if isinstance(count, bool) or not isinstance(count, int) or count <= 0:
        raise InvalidArgument(f"count must be a positive integer, got: {count!r}.")
    settings: dict[str, float] = {"count": count}
    for name in ("rate", "lead"):
        value = data.get(name, 0)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise InvalidArgument(f"{name} must be 0 or more, got: {value!r}.")
        settings[name] = value
    return settings


def countdown(settings: dict[str, float], context: FlowContext) -> str:
    """Send `count` countdown chunks, `rate` per second, then "Liftoff!"."""
    count = int(settings["count"])
    rate = settings["rate"]
    context.sleep(settings["lead"])
    start = time.monotonic()

    for index in range(count):
        if rate > 0:
            context.sleep(start + index / rate - time.monotonic())
        remaining = count - index
        context.send_chunk(
            {
                "count": remaining,
                "message": f"T-{remaining}...",
                "timestamp": datetime.datetime.now(datetime.UTC).isoformat(),
            }
        )
    return "Liftoff!"


countdown_flow = DurableFlow(countdown, parse_input=parse_input)


def app(request: flask.Request) -> flask.Response:
    if request.path == "/__writes":
        with _writes_lock:
            entry = _writes.get(request.args.get("stream", ""), {})
            return flask.jsonify({"commits": 0, "documents": 0, "failed": 0, **entry})
    return countdown_flow.handle(request)
