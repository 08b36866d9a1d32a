"""Server processes the benchmark starts on loopback ports, and their memory.

Each server runs in a process group of its own, so stopping it stops every
process it started, and its memory is the sum of the resident set sizes of
that group (gunicorn's arbiter and worker for ours, one Node.js process for
Genkit's).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OURS_APP = ROOT / "benchmarks" / "ours_app.py"
GENKIT_APP = ROOT / "benchmarks" / "genkit_server.cjs"
FUNCTIONS_FRAMEWORK = Path(sys.executable).parent / "functions-framework"

OURS_THREADS = 300
"""gunicorn threads of our server: each open SSE response holds one, and the
memory load opens 250 on one server."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """One server process listening on a loopback port."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        *,
        env: Mapping[str, str],
        port: int,
        log_path: Path,
    ) -> None:
        self.name = name
        self.command = list(command)
        self.env = {**os.environ, **env}
        self.port = port
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def start(self, timeout: float = 60.0) -> ServerProcess:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                start_new_session=True,
            )
        self._wait_listening(timeout)
        return self

    def _wait_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive:
                raise RuntimeError(
                    f"{self.name} exited with {self.exit_code}:\n{self.log_tail()}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not listen in {timeout:.0f} s")

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        # gunicorn's worker may outlive the arbiter for a moment.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def restart(self) -> ServerProcess:
        self.stop()
        return self.start()

    def log_tail(self, size: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-size:]
        except FileNotFoundError:
            return ""

    def rss_bytes(self) -> int:
        """Return the resident memory of every process in the server's group."""
        if self.process is None:
            return 0
        return sum(_rss_bytes(pid) for pid in _group_pids(self.process.pid))

    def cpu_seconds(self) -> float:
        """Return the CPU time, user and system, of the server's live processes."""
        if self.process is None:
            return 0.0
        return sum(_cpu_seconds(pid) for pid in _group_pids(self.process.pid))

    def worker_pid(self) -> int:
        """Return the process that serves requests: the newest in the group."""
        return max(_group_pids(self.pid))


def ours_server(name: str, env: Mapping[str, str], log_path: Path) -> ServerProcess:
    """Return (unstarted) a functions-framework server of `ours_app.app`."""
    port = free_port()
    command = [
        str(FUNCTIONS_FRAMEWORK),
        f"--source={OURS_APP}",
        "--target=app",
        "--host=127.0.0.1",
        f"--port={port}",
    ]
    server_env = {
        **env,
        "PYTHONPATH": str(ROOT / "functions"),
        "THREADS": str(OURS_THREADS),
        "LOG_LEVEL": "WARNING",
    }
    return ServerProcess(name, command, env=server_env, port=port, log_path=log_path)


def genkit_server(name: str, env: Mapping[str, str], log_path: Path) -> ServerProcess:
    """Return (unstarted) a Node.js server of Genkit's FirestoreStreamManager."""
    port = free_port()
    command = ["node", str(GENKIT_APP), str(port)]
    return ServerProcess(name, command, env=env, port=port, log_path=log_path)


class MemorySampler:
    """Samples the resident memory of servers in a thread; keeps each peak."""

    def __init__(self, servers: Sequence[ServerProcess], interval: float = 0.1):
        self._servers = list(servers)
        self._interval = interval
        self._stop = threading.Event()
        self.peaks = {server.name: 0 for server in servers}
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            for server in self._servers:
                self.peaks[server.name] = max(
                    self.peaks[server.name], server.rss_bytes()
                )


def _group_pids(group: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The fields after the command name, which is in parentheses.
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == group:
            pids.append(int(entry.name))
    return pids


def _cpu_seconds(pid: int) -> float:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    # utime and stime, the 14th and 15th fields of the whole line.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_bytes(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0
