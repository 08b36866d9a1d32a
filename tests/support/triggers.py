"""Firestore triggers without firebase-tools: the emulator's own functions hook.

An emulator started with ``--functions_emulator=HOST:PORT`` POSTs a CloudEvent
to that address for every write that matches a registered trigger. The
protobuf body is base64-encoded there, unlike in production.
"""

from __future__ import annotations

import http.server
import json
import queue
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cloudevents.http import CloudEvent, from_http

from durable_streams.events import WRITTEN
from firestore_emulator import Emulator, start_emulator
from support.servers import free_port


def start_hooked_emulator(
    functions_port: int, project: str, log_path: Path
) -> Emulator:
    """Start an emulator that delivers trigger events to `functions_port`."""
    return start_emulator(
        port=free_port(),
        project=project,
        log_path=log_path,
        extra_args=(f"--functions_emulator=127.0.0.1:{functions_port}",),
    )


def register_trigger(emulator: Emulator, trigger_id: str, document: str) -> None:
    """Make the emulator deliver write events of `document` (a path pattern)."""
    body = json.dumps(
        {
            "eventType": WRITTEN,
            "database": "(default)",
            "namespace": "(default)",
            "document": {"value": document, "matchType": "PATH_PATTERN"},
        }
    ).encode()
    url = (
        f"http://{emulator.address}/emulator/v1/projects/{emulator.project}"
        f"/eventarcTrigger?eventarcTriggerId={trigger_id}"
    )
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


@dataclass(frozen=True)
class Delivery:
    """One HTTP request the emulator sent to the functions hook."""

    headers: dict[str, str]
    body: bytes

    def cloud_event(self) -> CloudEvent:
        """Parse the request as functions-framework does."""
        return from_http(self.headers, self.body)


class _CaptureHandler(http.server.BaseHTTPRequestHandler):
    server: CaptureServer

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(length)
        self.server.deliveries.put(Delivery(dict(self.headers.items()), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


class CaptureServer(http.server.ThreadingHTTPServer):
    """A loopback server that keeps every event the emulator delivers."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _CaptureHandler)
        self.deliveries: queue.Queue[Delivery] = queue.Queue()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        port: int = self.server_address[1]
        return port

    def __enter__(self) -> CaptureServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()
        self.server_close()

    def next_for(self, document: str, timeout: float = 20.0) -> Delivery:
        """Return the next delivery about `document`, skipping others."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no event for {document!r} in {timeout} s")
            try:
                delivery = self.deliveries.get(timeout=remaining)
            except queue.Empty:
                continue
            if delivery.headers.get("ce-document") == document:
                return delivery

    def drain(self) -> Iterator[Delivery]:
        while True:
            try:
                yield self.deliveries.get_nowait()
            except queue.Empty:
                return
