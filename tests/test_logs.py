"""Log lines as Cloud Logging reads them, from real function servers.

Every line a function prints is one JSON object with `severity` and the
function's name; lines about a stream carry its id, also as a label, so one
stream can be followed across instances.
"""

from __future__ import annotations

import json
import time
from typing import Any

from conftest import ServerFactory

from support.servers import FUNCTIONS, Server
from support.sse import stream

LABELS = "logging.googleapis.com/labels"
TRACE = "logging.googleapis.com/trace"
SPAN_ID = "logging.googleapis.com/spanId"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
WAIT_SECONDS = 10.0


def _lines(server: Server) -> list[dict[str, Any]]:
    """Parse every line the server printed; fail on one that is not JSON."""
    lines = []
    for text in server.logs().splitlines():
        if text.strip():
            lines.append(json.loads(text))
    return lines


def _about(server: Server, stream_id: str, prefix: str) -> dict[str, Any]:
    """Return the one line about a stream that starts with `prefix`.

    A producer logs the end after readers have the final frame, so the line
    may come a moment after the response.
    """
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        matching = [
            line
            for line in _lines(server)
            if line.get("stream_id") == stream_id and line["message"].startswith(prefix)
        ]
        if matching or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(matching) == 1, f"{prefix!r}: {matching}"
    return matching[0]


def test_countdown_logs_start_reconnect_and_end(start_server: ServerFactory) -> None:
    server = start_server(source=FUNCTIONS / "main.py", target="countdown")
    traceparent = f"00-{TRACE_ID}-00f067aa0ba902b7-01"

    first = stream(
        server.url("/"), 3, max_frames=1, headers={"traceparent": traceparent}
    )
    assert first.stream_id is not None
    resumed = stream(server.url("/"), stream_id=first.stream_id)
    assert resumed.final == {"result": "Liftoff!"}

    started = _about(server, first.stream_id, "Stream started")
    reconnected = _about(server, first.stream_id, "Reconnected to stream")
    ended = _about(server, first.stream_id, "Stream ended done")
    for line in (started, reconnected, ended):
        assert line["severity"] == "INFO"
        assert line["function"] == "countdown"
        assert line[LABELS] == {"function": "countdown", "stream_id": first.stream_id}
        assert line["time"]
    assert started[TRACE] == f"projects/demo-streams-test/traces/{TRACE_ID}"
    assert started[SPAN_ID] == "00f067aa0ba902b7"
    assert TRACE not in ended


def test_flow_failure_logs_status_and_stream(start_server: ServerFactory) -> None:
    server = start_server()

    result = stream(server.url("fail"), {"status": "ABORTED", "message": "no luck"})
    assert result.stream_id is not None

    failed = _about(server, result.stream_id, "Flow failed with ABORTED: no luck")
    ended = _about(server, result.stream_id, "Stream ended failed")
    assert failed["function"] == "app"
    assert failed["logger"] == "durable_streams.producer"
    assert failed["logging.googleapis.com/sourceLocation"]["function"] == "_run_flow"
    assert ended[LABELS]["stream_id"] == result.stream_id


def test_unexpected_flow_error_logs_error_with_traceback(
    start_server: ServerFactory,
) -> None:
    server = start_server()

    result = stream(server.url("crash"), None)
    assert result.stream_id is not None

    crashed = _about(server, result.stream_id, "Flow raised an unexpected error")
    assert crashed["severity"] == "ERROR"
    assert "RuntimeError: secret internal detail" in crashed["exc_info"]


def test_cloud_trace_context_header_sets_trace(start_server: ServerFactory) -> None:
    server = start_server(source=FUNCTIONS / "main.py", target="countdown")
    header = f"{TRACE_ID.upper()}/12345;o=1"

    result = stream(server.url("/"), 1, headers={"X-Cloud-Trace-Context": header})
    assert result.stream_id is not None

    started = _about(server, result.stream_id, "Stream started")
    assert started[TRACE] == f"projects/demo-streams-test/traces/{TRACE_ID}"
    assert started[SPAN_ID] == "12345"
