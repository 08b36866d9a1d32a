"""The Firebase Auth emulator of firebase-tools, and users signed in to it.

The Auth emulator runs in Node.js and needs no Java. It is started with
`firebase emulators:start --only auth` from a firebase.json of its own in a
temporary folder, on free loopback ports, so that it never collides with a
project configuration or with other emulators on the machine.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from support.servers import ROOT, free_port

FIREBASE = ROOT / "node_modules" / ".bin" / "firebase"
API_KEY = "any-key"
"""The emulator accepts any API key."""


@dataclass(frozen=True)
class User:
    """A user signed up on the emulator, with a fresh ID token."""

    uid: str
    email: str
    id_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.id_token}"}


class AuthEmulator:
    """A running Auth emulator process for one demo project."""

    def __init__(self, project: str, workdir: Path) -> None:
        self.project = project
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> AuthEmulator:
        if not FIREBASE.exists():
            raise RuntimeError(f"{FIREBASE} is missing; run scripts/setup-node first")

        config = self.workdir / "firebase.json"
        config.write_text(json.dumps(self._config()))
        log = open(self.workdir / "auth-emulator.log", "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                str(FIREBASE),
                "emulators:start",
                "--only=auth",
                f"--project={self.project}",
                f"--config={config}",
            ],
            cwd=self.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            # CI=true keeps firebase-tools from fetching its message of the day.
            env={**os.environ, "CI": "true"},
            start_new_session=True,
        )
        log.close()
        self._wait_ready(timeout)
        return self

    def _config(self) -> dict[str, object]:
        loopback = "127.0.0.1"
        return {
            "emulators": {
                "auth": {"host": loopback, "port": self.port},
                "hub": {"host": loopback, "port": free_port()},
                "logging": {"host": loopback, "port": free_port()},
                "ui": {"enabled": False},
            }
        }

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"the Auth emulator exited:\n{self.logs()[-3000:]}")
            try:
                httpx.get(f"http://{self.address}/", timeout=1).raise_for_status()
                return
            except httpx.HTTPError:
                time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"the Auth emulator did not start in {timeout:.0f} s")

    def stop(self) -> None:
        """Stop firebase-tools and every process it started."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def logs(self) -> str:
        path = self.workdir / "auth-emulator.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def sign_up(self) -> User:
        """Create a new email and password user and return it signed in."""
        email = f"user-{secrets.token_hex(6)}@example.com"
        response = httpx.post(
            f"http://{self.address}/identitytoolkit.googleapis.com/v1/accounts:signUp",
            params={"key": API_KEY},
            json={
                "email": email,
                "password": secrets.token_urlsafe(12),
                "returnSecureToken": True,
            },
            timeout=10,
        )
        response.raise_for_status()
        body = response.json()
        return User(uid=body["localId"], email=email, id_token=body["idToken"])
