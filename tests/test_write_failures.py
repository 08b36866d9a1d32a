"""Writes that keep failing end the stream with an error, never silently."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import PROJECT
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore

from firestore_emulator import Emulator, start_emulator
from support.servers import Server, free_port
from support.sse import stream


@pytest.fixture
def own_emulator(tmp_path: Path) -> Iterator[Emulator]:
    """An emulator of this test's own, so pausing it affects no other test."""
    running = start_emulator(
        port=free_port(), project=PROJECT, log_path=tmp_path / "emulator.log"
    )
    # The first calls to a new emulator are slow while its JVM warms up, and
    # this test's Firestore calls time out after two seconds.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FIRESTORE_EMULATOR_HOST", running.address)
        client = firestore.Client(project=PROJECT, credentials=AnonymousCredentials())
        for _ in range(3):
            client.collection("warm-up").document("doc").set({"at": time.time()})
        client.close()
    yield running
    os.kill(running.process.pid, signal.SIGCONT)
    running.stop()


def test_unwritable_stream_fails_with_error_frame(
    own_emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {
        "FIRESTORE_EMULATOR_HOST": own_emulator.address,
        "GCLOUD_PROJECT": own_emulator.project,
        "FIRESTORE_STREAMS_COLLECTION": "streams",
        "FIRESTORE_RPC_TIMEOUT_SECONDS": "2",
        "STREAM_RETRY_DEADLINE_SECONDS": "4",
        "STREAM_LEASE_SECONDS": "30",
    }
    server = Server(env=env, log_path=tmp_path / "server.log").start()
    try:
        started = stream(
            server.url("ticker"), {"count": 100, "tick": 0.1}, max_frames=2
        )
        assert started.stream_id is not None
        os.kill(own_emulator.process.pid, signal.SIGSTOP)
        try:
            live = stream(server.url("ticker"), stream_id=started.stream_id, timeout=60)
        finally:
            os.kill(own_emulator.process.pid, signal.SIGCONT)

        assert live.final == {
            "error": {
                "status": "UNAVAILABLE",
                "message": "The stream could not be saved to Firestore.",
            }
        }
        live.assert_one_final_frame_last()
        assert live.seqs == list(range(len(live.seqs)))
        assert "retrying in" in server.logs()

        monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", own_emulator.address)
        record = wait_for_failed_record(own_emulator, started.stream_id)
        assert (
            record["error"]["message"] == "The stream could not be saved to Firestore."
        )
        # A write that timed out while the emulator was paused may still be
        # applied when it resumes, so the record can hold chunks that the
        # reader never saw, but never fewer than it saw.
        assert record["count"] >= len(live.seqs)
    finally:
        server.stop()


def wait_for_failed_record(emulator: Emulator, stream_id: str) -> dict[str, object]:
    client = firestore.Client(
        project=emulator.project, credentials=AnonymousCredentials()
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            data = (
                client.collection("streams").document(stream_id).get().to_dict() or {}
            )
            if data.get("status") == "failed":
                return data
            time.sleep(0.2)
        raise AssertionError(f"stream {stream_id} was never recorded as failed")
    finally:
        client.close()
