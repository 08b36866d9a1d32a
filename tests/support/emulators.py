"""A Firestore emulator of one test's own, to pause, kill and start again."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from google.cloud import firestore

from firestore_emulator import Emulator, start_emulator
from support.clients import client_for
from support.servers import free_port


class OwnEmulator:
    """An emulator process on a fixed loopback port, started again on the same
    port after a kill, so that servers reconnect to it by themselves."""

    def __init__(self, project: str, log_path: Path) -> None:
        self.project = project
        self.port = free_port()
        self._log_path = log_path
        self._running: Emulator | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self._running is not None
        return self._running.process.pid

    def start(self) -> OwnEmulator:
        self._running = start_emulator(
            port=self.port, project=self.project, log_path=self._log_path
        )
        self._warm_up()
        return self

    def _warm_up(self) -> None:
        """Make a few writes: the first calls to a new emulator are slow while
        its JVM warms up, and fault tests time their calls out early."""
        client = self.client()
        for _ in range(3):
            client.collection("warm-up").document("doc").set({"at": time.time()})
        client.close()

    def client(self) -> firestore.Client:
        """Return a Firestore client of this emulator."""
        assert self._running is not None
        return client_for(self._running)

    def kill(self) -> None:
        """Kill the emulator with SIGKILL; every document it held is lost."""
        assert self._running is not None
        self._running.process.kill()
        self._running.process.wait(timeout=30)

    def pause(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self._running is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.resume()
        self._running.stop()
