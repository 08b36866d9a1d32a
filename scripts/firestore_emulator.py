#!/usr/bin/env python3
"""Start and stop Google's Cloud Firestore emulator.

The emulator jar is looked up, in order, at `FIRESTORE_EMULATOR_JAR`, in the
Google Cloud CLI's component (`cloud-firestore-emulator`), and in
firebase-tools' download cache. Java is started directly, never through the
`gcloud` wrapper, which does not pass signals on and leaves Java running.

    python scripts/firestore_emulator.py start [--port 8180] [--project demo-streams]
    python scripts/firestore_emulator.py stop  [--port 8180]
    python scripts/firestore_emulator.py run   [--port 8180]   # in the foreground

Tests import `start_emulator` from this file.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

MAIN_CLASS = "com.google.cloud.datastore.emulator.firestore.CloudFirestore"
DEFAULT_PORT = 8180
DEFAULT_PROJECT = "demo-streams"
ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = ROOT / ".local"

GCLOUD_COMPONENT = "platform/cloud-firestore-emulator/cloud-firestore-emulator.jar"
SDK_ROOTS = (
    "/usr/lib/google-cloud-sdk",
    "/usr/share/google-cloud-sdk",
    "/opt/google-cloud-sdk",
    str(Path.home() / "google-cloud-sdk"),
)
FIREBASE_CACHE = Path.home() / ".cache" / "firebase" / "emulators"

HOW_TO_GET_IT = """\
No Cloud Firestore emulator jar was found. Get one of these, then run again:
  - Google Cloud CLI: gcloud components install cloud-firestore-emulator
    (on Debian or Ubuntu: apt-get install google-cloud-cli-firestore-emulator)
  - firebase-tools:   npx firebase-tools setup:emulators:firestore
  - a jar you have:   export FIRESTORE_EMULATOR_JAR=/path/to/the/emulator.jar
The emulator needs Java 11 or newer on PATH (or JAVA_HOME)."""


class EmulatorError(RuntimeError):
    """The emulator could not be found or started."""


@dataclass
class Emulator:
    """A running emulator process."""

    process: subprocess.Popen[bytes]
    host: str
    port: int
    project: str

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def reset(self) -> None:
        """Delete every document of the project."""
        url = (
            f"http://{self.address}/emulator/v1/projects/{self.project}"
            "/databases/(default)/documents"
        )
        urllib.request.urlopen(urllib.request.Request(url, method="DELETE"), timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def find_jar() -> Path:
    """Return the emulator jar, or raise `EmulatorError` saying how to get one."""
    configured = os.environ.get("FIRESTORE_EMULATOR_JAR")
    if configured:
        if Path(configured).is_file():
            return Path(configured)
        raise EmulatorError(f"FIRESTORE_EMULATOR_JAR names no file: {configured!r}")

    roots = list(SDK_ROOTS)
    gcloud = shutil.which("gcloud")
    if gcloud:
        roots.insert(0, str(Path(gcloud).resolve().parent.parent))
    for root in roots:
        candidate = Path(root) / GCLOUD_COMPONENT
        if candidate.is_file():
            return candidate

    cached = sorted(glob.glob(str(FIREBASE_CACHE / "cloud-firestore-emulator-v*.jar")))
    if cached:
        return Path(cached[-1])

    raise EmulatorError(HOW_TO_GET_IT)


def find_java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and Path(java_home, "bin", "java").is_file():
        return str(Path(java_home, "bin", "java"))
    java = shutil.which("java")
    if java is None:
        raise EmulatorError("Java was not found. " + HOW_TO_GET_IT.splitlines()[-1])
    return java


def start_emulator(
    port: int = DEFAULT_PORT,
    project: str = DEFAULT_PROJECT,
    host: str = "127.0.0.1",
    log_path: Path | None = None,
    extra_args: tuple[str, ...] = (),
    timeout: float = 60.0,
    detach: bool = False,
) -> Emulator:
    """Start the emulator and wait until it responds to HTTP requests.

    With `detach`, the emulator runs in a session of its own, so a Ctrl+C in
    the terminal that started it does not reach it.
    """
    command = [
        find_java(),
        "-Duser.language=en",
        "-cp",
        str(find_jar()),
        MAIN_CLASS,
        "start",
        f"--host={host}",
        f"--port={port}",
        f"--project_id={project}",
        *extra_args,
    ]
    with open(log_path or os.devnull, "ab") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=detach,
        )
    emulator = Emulator(process, host, port, project)

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EmulatorError(
                f"the emulator exited with status {process.returncode}; "
                f"is port {port} free? Log: {log_path or 'not kept'}"
            )
        try:
            urllib.request.urlopen(f"http://{host}:{port}/", timeout=1).read()
            return emulator
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)

    emulator.stop()
    raise EmulatorError(
        f"the emulator did not answer on {host}:{port} in {timeout:.0f} s"
    )


def _pid_file(port: int) -> Path:
    return STATE_DIR / f"firestore-emulator-{port}.pid"


def _start(args: argparse.Namespace) -> int:
    STATE_DIR.mkdir(exist_ok=True)
    log_path = STATE_DIR / f"firestore-emulator-{args.port}.log"
    emulator = start_emulator(args.port, args.project, args.host, log_path, detach=True)
    _pid_file(args.port).write_text(str(emulator.process.pid))
    print(
        f"Firestore emulator running on {emulator.address} (pid {emulator.process.pid})"
    )
    print(f"export FIRESTORE_EMULATOR_HOST={emulator.address}")
    return 0


def _stop(args: argparse.Namespace) -> int:
    pid_file = _pid_file(args.port)
    if not pid_file.exists():
        print(f"No emulator started by this script on port {args.port}.")
        return 0
    pid = int(pid_file.read_text())
    try:
        os.kill(pid, signal.SIGTERM)
        print(f"Stopped the Firestore emulator (pid {pid}).")
    except ProcessLookupError:
        print(f"The emulator (pid {pid}) had already stopped.")
    pid_file.unlink()
    return 0


def _run(args: argparse.Namespace) -> int:
    emulator = start_emulator(args.port, args.project, args.host)
    print(f"Firestore emulator running on {emulator.address}; Ctrl+C stops it.")
    try:
        return emulator.process.wait()
    except KeyboardInterrupt:
        emulator.stop()
        return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["start", "stop", "run", "find"])
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--project", default=DEFAULT_PROJECT)
    args = parser.parse_args()

    try:
        if args.action == "find":
            print(find_jar())
            return 0
        return {"start": _start, "stop": _stop, "run": _run}[args.action](args)
    except EmulatorError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
