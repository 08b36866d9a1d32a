"""JSON log lines for Cloud Logging.

Cloud Logging reads each line of a function's stdout as one entry and takes
its level from the `severity` field. Every line also names the function, and
lines about a stream carry its `stream_id`, so an operator can follow one
stream across instances by filtering on `jsonPayload.stream_id`.

Cloud Logging also moves these fields out of the payload into the entry:

- `logging.googleapis.com/labels`: the function and the stream id, so that
  `labels.stream_id="..."` finds a stream's lines and the log viewer shows it
  in each entry's summary;
- `logging.googleapis.com/trace` and `spanId`, from the request's
  `traceparent` or `X-Cloud-Trace-Context` header, so that the lines of one
  request are grouped under it. Lines from a stream's producer threads run
  outside any request and carry no trace;
- `logging.googleapis.com/sourceLocation`: the file, line and function.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from typing import Any

import flask
from pythonjsonlogger.json import JsonFormatter

FUNCTION_VARIABLES = ("FUNCTION_TARGET", "K_SERVICE")
PROJECT_VARIABLES = ("GCLOUD_PROJECT", "GOOGLE_CLOUD_PROJECT")

LABELS = "logging.googleapis.com/labels"
TRACE = "logging.googleapis.com/trace"
SPAN_ID = "logging.googleapis.com/spanId"
SOURCE_LOCATION = "logging.googleapis.com/sourceLocation"

_TRACEPARENT = re.compile(r"[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")
_CLOUD_TRACE_CONTEXT = re.compile(r"([0-9a-fA-F]{32})(?:/(\d+))?")


def function_name() -> str | None:
    """Return the name of the function this process serves, if known."""
    for variable in FUNCTION_VARIABLES:
        value = os.environ.get(variable)
        if value:
            return value
    return None


def request_trace() -> tuple[str, str | None] | None:
    """Return the trace id and span id of the current HTTP request, if any."""
    if not flask.has_request_context():
        return None

    headers = flask.request.headers
    match = _TRACEPARENT.fullmatch(headers.get("traceparent", "").strip())
    if match:
        return match.group(1), match.group(2)
    match = _CLOUD_TRACE_CONTEXT.match(headers.get("X-Cloud-Trace-Context", ""))
    if match:
        return match.group(1).lower(), match.group(2)
    return None


class CloudLoggingFields(logging.Filter):
    """Adds the fields that Cloud Logging reads from a JSON log line."""

    def __init__(self, function: str, project: str | None) -> None:
        super().__init__()
        self.function = function
        self.project = project

    def filter(self, record: logging.LogRecord) -> bool:
        fields: dict[str, Any] = record.__dict__

        labels = {"function": self.function}
        stream_id = fields.get("stream_id")
        if stream_id:
            labels["stream_id"] = str(stream_id)
        fields[LABELS] = labels
        fields[SOURCE_LOCATION] = {
            "file": record.pathname,
            "line": str(record.lineno),
            "function": record.funcName,
        }

        trace = request_trace() if self.project else None
        if trace is not None:
            trace_id, span_id = trace
            fields[TRACE] = f"projects/{self.project}/traces/{trace_id}"
            if span_id:
                fields[SPAN_ID] = span_id
        return True


def configure_logging(level: int | str | None = None) -> None:
    """Send the root logger's records to stdout as JSON lines.

    Meant for the application entry point (`main.py`), never for library
    code. The level comes from `LOG_LEVEL` when not given, INFO by default.
    """
    level = level or os.environ.get("LOG_LEVEL") or logging.INFO
    function = function_name() or "unknown"
    project = next(
        (os.environ[name] for name in PROJECT_VARIABLES if os.environ.get(name)), None
    )

    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        JsonFormatter(
            "{message}{levelname}{name}",
            style="{",
            rename_fields={"levelname": "severity", "name": "logger"},
            static_fields={"function": function},
            timestamp="time",
        )
    )
    handler.addFilter(CloudLoggingFields(function, project))

    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, "_durable_streams", False):
            root.removeHandler(existing)
    handler._durable_streams = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
