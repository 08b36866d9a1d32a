"""Whether the client of a streaming response is still connected.

A WSGI server learns that a client has gone only when a write to its socket
fails. A response in Genkit's dialect has no keep-alive, so a reader of a
silent stream writes nothing for as long as the flow thinks, and a client
that left would hold a request thread all that time. The reader therefore
peeks at the socket while it waits.

gunicorn, which functions-framework runs, puts the socket in the WSGI
environ as ``gunicorn.socket``. Behind a proxy the socket is the proxy's
connection, which closes when the proxy drops the request.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Mapping
from typing import Any

import flask

SOCKET_KEY = "gunicorn.socket"
"""Key of the client socket in the WSGI environ of a gunicorn request."""

DRAIN_BYTES = 64 * 1024
"""Size of each read of a request body that is dropped."""


class ClientConnection:
    """The connection of the client that reads one response."""

    def __init__(self, environ: Mapping[str, Any]) -> None:
        sock = environ.get(SOCKET_KEY)
        # NOTE: a TLS socket cannot be peeked at, and other servers such as
        # Flask's development server expose no socket. Their clients count as
        # connected until a write to them fails.
        plain = isinstance(sock, socket.socket) and not isinstance(sock, ssl.SSLSocket)
        self._socket: socket.socket | None = sock if plain else None

    def closed(self) -> bool:
        """Tell whether the client has closed or reset the connection.

        Data waiting to be read means the client is still connected. The request
        body must have been read first, or it hides the end of the stream. A
        client that shuts down only its sending side counts as gone too.
        """
        if self._socket is None:
            return False
        try:
            data = self._socket.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True
        return data == b""


def drain_body(request: flask.Request, limit: int) -> None:
    """Read and drop up to `limit` bytes of a request body that is ignored, so
    that `ClientConnection.closed` can see the end of the connection."""
    left = limit
    while left > 0:
        data = request.stream.read(min(DRAIN_BYTES, left))
        if not data:
            return
        left -= len(data)
