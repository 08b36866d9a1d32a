"""Function servers started as real processes with functions-framework."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = ROOT / "functions"
TEST_APP = ROOT / "tests" / "servers" / "flows.py"
FUNCTIONS_FRAMEWORK = Path(sys.executable).parent / "functions-framework"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(
    port: int, process: subprocess.Popen[bytes], log_path: Path, timeout: float
) -> None:
    """Wait until a process listens on a loopback port; raise if it exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            logs = log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"server exited with {process.returncode}:\n{logs}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    logs = log_path.read_text(errors="replace")[-3000:]
    raise RuntimeError(f"server did not listen in {timeout} s:\n{logs}")


class Server:
    """A functions-framework process serving one target on a loopback port.

    The process runs gunicorn as in Cloud Functions. `kill` sends any signal,
    and `start` runs it again on the same port with the same environment.
    """

    def __init__(
        self,
        *,
        source: Path = TEST_APP,
        target: str = "app",
        env: Mapping[str, str],
        log_path: Path,
        port: int | None = None,
    ) -> None:
        self.source = source
        self.target = target
        self.port = port or free_port()
        self.env = {**os.environ, **env, "PYTHONPATH": str(FUNCTIONS)}
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def start(self, timeout: float = 30.0) -> Server:
        command = [
            str(FUNCTIONS_FRAMEWORK),
            f"--source={self.source}",
            f"--target={self.target}",
            "--host=127.0.0.1",
            f"--port={self.port}",
        ]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                start_new_session=True,
            )
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                code = self.process.returncode
                raise RuntimeError(f"server exited with {code}:\n{self.logs()[-3000:]}")
            try:
                httpx.get(self.base_url, timeout=2)
                return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError(
            f"server did not listen in {timeout} s:\n{self.logs()[-3000:]}"
        )

    def kill(self, sig: signal.Signals = signal.SIGKILL) -> None:
        """Send a signal to the whole server: gunicorn's arbiter and worker.

        SIGKILL is what an instance that disappears looks like; SIGSTOP and
        SIGCONT pause and resume it.
        """
        assert self.process is not None
        os.killpg(self.process.pid, sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            self.process.wait(timeout=30)
            self._wait_group_gone()

    def _wait_group_gone(self, timeout: float = 30.0) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.killpg(self.process.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        raise RuntimeError(f"server processes still alive after {timeout} s")

    def stop(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGCONT)
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def listener_count(self) -> int:
        """Return how many Firestore listeners the server has open."""
        response = httpx.get(self.url("__listeners"))
        response.raise_for_status()
        count: int = response.json()
        return count

    def commits(self, stream_id: str) -> list[tuple[float, list[str]]]:
        """Return the (time, document paths) of every write this server made
        for a stream, as recorded by the test app."""
        response = httpx.get(self.url("__commits"), params={"stream": stream_id})
        response.raise_for_status()
        return [(entry["time"], entry["paths"]) for entry in response.json()]


def terminate_all(servers: list[Server]) -> None:
    for server in servers:
        server.stop()
