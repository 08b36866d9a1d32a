"""The public API: turn a function into a durable streaming HTTP function."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import flask
from flask_cors import cross_origin

from .config import StreamOptions
from .context import FlowContext
from .runtime import get_runtime
from .streams import StreamManager
from .wire import STREAM_ID_HEADER

InputT = TypeVar("InputT")
OutputT = TypeVar("OutputT")

FlowFunction = Callable[[InputT, FlowContext], OutputT]
InputParser = Callable[[Any], InputT]

_NAME_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,62}")
_registry: dict[str, DurableFlow[Any, Any]] = {}
_registry_lock = threading.Lock()

ALLOWED_METHODS = ["GET", "POST", "OPTIONS"]
ALLOWED_HEADERS = [
    "Content-Type",
    "Accept",
    "Authorization",
    STREAM_ID_HEADER,
    "Last-Event-ID",
    "Prefer",
]
EXPOSED_HEADERS = [STREAM_ID_HEADER, "Location", "Preference-Applied"]


class DurableFlow(Generic[InputT, OutputT]):
    """A flow served over HTTP whose stream survives disconnects and restarts.

    `fn(input, context)` runs on the server, sends chunks with
    `context.send_chunk(...)` and returns the output. `parse_input` turns the
    request's JSON `data` into the flow input and raises `InvalidArgument` for
    a bad one. A flow is `resumable` when running it again with the same input
    and `context.position` chunks already sent produces exactly the chunks that
    follow; another instance then resumes it when its producer dies, instead
    of failing the stream.

    The object is a Flask view: pass a request to `handle` (or call it).
    """

    def __init__(
        self,
        fn: FlowFunction[InputT, OutputT],
        *,
        name: str | None = None,
        options: StreamOptions | None = None,
        resumable: bool = False,
        parse_input: InputParser[InputT] | None = None,
        cors_origins: str | Sequence[str] | None = None,
    ) -> None:
        self.fn = fn
        self.name = name or fn.__name__
        if not _NAME_PATTERN.fullmatch(self.name):
            raise ValueError(
                "flow name must be a letter then up to 62 letters, digits, "
                "'_' or '-', "
                f"got: {self.name!r}"
            )
        self.options = options or StreamOptions.from_env()
        self.resumable = resumable
        self.parse_input: InputParser[InputT] = parse_input or _unchanged

        def view(request: flask.Request) -> flask.Response:
            from .handler import serve

            return serve(self, request)

        self._view = cross_origin(
            origins=_cors_origins(cors_origins),
            methods=ALLOWED_METHODS,
            allow_headers=ALLOWED_HEADERS,
            expose_headers=EXPOSED_HEADERS,
            max_age=3600,
        )(view)

        with _registry_lock:
            _registry[self.name] = self

    @property
    def manager(self) -> StreamManager:
        """The stream manager of this flow's collection."""
        return get_runtime().manager(self.options.collection)

    def handle(self, request: flask.Request) -> flask.Response:
        """Answer one HTTP request: start, follow or call the flow."""
        response: flask.Response = self._view(request)
        return response

    __call__ = handle


def durable_flow(
    *,
    name: str | None = None,
    options: StreamOptions | None = None,
    resumable: bool = False,
    parse_input: InputParser[Any] | None = None,
    cors_origins: str | Sequence[str] | None = None,
) -> Callable[[FlowFunction[Any, Any]], DurableFlow[Any, Any]]:
    """Decorate a flow function to make it a `DurableFlow`."""

    def decorate(fn: FlowFunction[Any, Any]) -> DurableFlow[Any, Any]:
        return DurableFlow(
            fn,
            name=name,
            options=options,
            resumable=resumable,
            parse_input=parse_input,
            cors_origins=cors_origins,
        )

    return decorate


def registered_flow(name: str) -> DurableFlow[Any, Any] | None:
    """Return the flow of that name defined in this process, if any."""
    with _registry_lock:
        return _registry.get(name)


def _unchanged(data: Any) -> Any:
    return data


def _cors_origins(origins: str | Sequence[str] | None) -> str | list[str]:
    if origins is None:
        origins = os.environ.get("CORS_ORIGINS") or "*"
    if isinstance(origins, str):
        names = [name.strip() for name in origins.split(",") if name.strip()]
        return "*" if names in ([], ["*"]) else names
    return list(origins)
