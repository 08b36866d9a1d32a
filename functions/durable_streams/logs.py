"""JSON log lines for Cloud Logging.

Cloud Logging reads each line of a function's stdout as one entry and takes
its level from the `severity` field. Every line also names the function, and
lines about a stream carry its `stream_id`, so an operator can follow one
stream across instances by filtering on `jsonPayload.stream_id`.
"""

from __future__ import annotations

import logging
import os
import sys

from pythonjsonlogger.json import JsonFormatter

FUNCTION_VARIABLES = ("FUNCTION_TARGET", "K_SERVICE")


def function_name() -> str | None:
    """Return the name of the function this process serves, if known."""
    for variable in FUNCTION_VARIABLES:
        value = os.environ.get(variable)
        if value:
            return value
    return None


def configure_logging(level: int | str | None = None) -> None:
    """Send the root logger's records to stdout as JSON lines.

    Meant for the application entry point (`main.py`), never for library
    code. The level comes from `LOG_LEVEL` when not given, INFO by default.
    """
    level = level or os.environ.get("LOG_LEVEL") or logging.INFO
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        JsonFormatter(
            "{message}{levelname}{name}",
            style="{",
            rename_fields={"levelname": "severity", "name": "logger"},
            static_fields={"function": function_name() or "unknown"},
            timestamp="time",
        )
    )

    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, "_durable_streams", False):
            root.removeHandler(existing)
    handler._durable_streams = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
