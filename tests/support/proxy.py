"""A loopback TCP proxy whose connections a test can cut, for real drops."""

from __future__ import annotations

import contextlib
import socket
import threading

from support.servers import free_port

BUFFER_BYTES = 64 * 1024


class TcpProxy:
    """Forwards connections on a loopback port to another loopback port.

    `cut` closes every open connection on both sides, as a network drop
    does; `down` also stops accepting until `up`. `requests` keeps the first
    bytes each client sent, so a test can check the request headers.
    """

    def __init__(self, target_port: int, port: int | None = None) -> None:
        self.target_port = target_port
        self.port = port or free_port()
        self.requests: list[bytes] = []
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def up(self) -> TcpProxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def down(self) -> None:
        """Stop accepting connections and cut the open ones."""
        listener, self._listener = self._listener, None
        if listener is not None:
            # Closing alone does not wake a thread blocked in accept() on
            # Linux, and the socket would go on listening.
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        self.cut()

    def cut(self) -> None:
        """Shut every open connection down, on the client's and the server's
        side; its pumps then close it."""
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets.update((client, upstream))
            index = len(self.requests)
            self.requests.append(b"")
            pumps = [2]
            for source, sink, record in (
                (client, upstream, index),
                (upstream, client, None),
            ):
                threading.Thread(
                    target=self._pump,
                    args=(source, sink, record, pumps),
                    daemon=True,
                ).start()

    def _pump(
        self,
        source: socket.socket,
        sink: socket.socket,
        index: int | None,
        pumps: list[int],
    ) -> None:
        """Copy bytes one way; the last pump of a connection closes it."""
        try:
            while data := source.recv(BUFFER_BYTES):
                if index is not None and len(self.requests[index]) < BUFFER_BYTES:
                    self.requests[index] += data
                sink.sendall(data)
        except OSError:
            pass

        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        with self._lock:
            pumps[0] -= 1
            if pumps[0] > 0:
                return
            self._sockets.difference_update((source, sink))
        source.close()
        sink.close()
