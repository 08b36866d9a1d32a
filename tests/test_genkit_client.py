"""Genkit's own JS client (`streamFlow` from genkit/beta/client) against our
server, compared with what it gets from Genkit's own server.

The reference server is tests/js/genkit_server.cjs: genkit with
@genkit-ai/express and Genkit's Firestore stream manager on the same
emulator. The client script starts a flow, drops the connection after some
chunks, and resumes with the stream id.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from firestore_emulator import Emulator
from support.servers import ROOT, Server, free_port, wait_for_port

SCRIPTS = ROOT / "tests" / "js"
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(
    NODE is None or not (ROOT / "node_modules" / "genkit").is_dir(),
    reason="needs Node.js and node_modules (scripts/setup-node)",
)


@pytest.fixture
def genkit_server(
    emulator: Emulator, server_env: dict[str, str], tmp_path: Path
) -> Iterator[str]:
    """Genkit's Express server on a loopback port; yields its base URL."""
    port = free_port()
    log_path = tmp_path / "genkit-server.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [str(NODE), str(SCRIPTS / "genkit_server.cjs"), str(port)],
            env={**os.environ, **server_env},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    try:
        wait_for_port(port, process, log_path, timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def run_client(url: str, data: Any, drop_after: int) -> dict[str, Any]:
    finished = subprocess.run(
        [
            str(NODE),
            str(SCRIPTS / "genkit_client.mjs"),
            url,
            json.dumps(data),
            str(drop_after),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    assert finished.returncode == 0, finished.stderr
    outcome: dict[str, Any] = json.loads(finished.stdout)
    return outcome


def is_prefix(chunks: list[Any], expected: list[Any]) -> bool:
    """Tell whether `chunks` starts `expected`: Genkit's client stops yielding
    buffered chunks once it has read an error frame."""
    return chunks == expected[: len(chunks)]


def without_timestamps(chunks: list[Any]) -> list[Any]:
    return [
        {key: value for key, value in chunk.items() if key != "timestamp"}
        for chunk in chunks
    ]


def test_genkit_client_resumes_countdown_like_genkit(
    server: Server, genkit_server: str
) -> None:
    ours = run_client(server.url("countdown"), 8, drop_after=3)
    genkits = run_client(f"{genkit_server}/countdown", 8, drop_after=3)

    for outcome in (ours, genkits):
        assert outcome["streamIdIsSet"]
        assert outcome["beforeError"] is None
        assert outcome["error"] is None
    assert without_timestamps(ours["before"]) == without_timestamps(genkits["before"])
    assert without_timestamps(ours["after"]) == without_timestamps(genkits["after"])
    assert ours["output"] == genkits["output"] == "Liftoff!"
    assert [chunk["count"] for chunk in ours["after"]] == list(range(8, 0, -1))


def test_genkit_client_replay_equals_live_chunks(server: Server) -> None:
    outcome = run_client(server.url("countdown"), 6, drop_after=2)

    assert outcome["after"][:2] == outcome["before"]
    assert outcome["resumedStreamId"]


def test_genkit_client_gets_flow_error_like_genkit(
    server: Server, genkit_server: str
) -> None:
    data = {"after": 2, "status": "ABORTED", "message": "failed on purpose"}

    ours = run_client(server.url("fail"), data, drop_after=10)
    genkits = run_client(f"{genkit_server}/fail", data, drop_after=10)

    assert ours["beforeError"] == genkits["beforeError"]
    assert ours["beforeError"] == "ABORTED: failed on purpose\nundefined"
    assert is_prefix(ours["before"], [0, 1])
    assert is_prefix(genkits["before"], [0, 1])


def test_genkit_client_resumed_error_keeps_status(server: Server) -> None:
    data = {"after": 3, "tick": 0.1, "status": "ABORTED"}

    outcome = run_client(server.url("fail"), data, drop_after=1)

    # Genkit's own managers may return INTERNAL here; the status is kept.
    assert outcome["before"] == [0]
    assert outcome["error"] == "ABORTED: failed on purpose\nundefined"
    assert is_prefix(outcome["after"], [0, 1, 2])
