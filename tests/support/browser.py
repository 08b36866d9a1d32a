"""Headless Chromium driven through tests/js/browser.mjs, one command a line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from support.servers import ROOT, free_port, wait_for_port

DRIVER = ROOT / "tests" / "js" / "browser.mjs"
WEB = ROOT / "web"


class BrowserError(AssertionError):
    """A browser command failed."""


class Browser:
    """One Chromium page; every call sends a command and waits for its reply."""

    def __init__(self, chromium: str, profile: Path, log_path: Path) -> None:
        node = shutil.which("node")
        if node is None:
            raise BrowserError("node is not on PATH")
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in close()
        self.process = subprocess.Popen(
            [node, str(DRIVER), chromium, str(profile)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            cwd=ROOT,
        )
        self._reply()

    def goto(self, url: str) -> None:
        self._send({"goto": url})

    def fill(self, selector: str, value: str) -> None:
        self._send({"fill": selector, "value": value})

    def click(self, selector: str) -> None:
        self._send({"click": selector})

    def eval(self, expression: str) -> Any:
        return self._send({"eval": expression}).get("value")

    def wait(self, expression: str, timeout: float = 30.0) -> None:
        self._send({"wait": expression, "timeout": int(timeout * 1000)})

    def screenshot(self, path: Path) -> None:
        self._send({"screenshot": str(path)})

    def console(self) -> list[str]:
        lines: list[str] = self._send({"console": True}).get("value", [])
        return lines

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log.close()

    def _send(self, command: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        reply = self._reply()
        if "error" in reply:
            raise BrowserError(f"{command}: {reply['error']}")
        return reply

    def _reply(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise BrowserError(f"the browser driver exited ({self.process.poll()})")
        reply: dict[str, Any] = json.loads(line)
        return reply


class StaticServer:
    """Python's http.server serving web/ on a loopback port, as scripts/run does."""

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "http.server", str(self.port)),
                *("--bind", "127.0.0.1", "--directory", str(WEB)),
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_for_port(self.port, self.process, log_path, timeout=30)

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        self._log.close()
