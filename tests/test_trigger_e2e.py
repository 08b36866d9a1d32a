"""The finalize trigger end to end, without firebase-tools.

The Firestore emulator delivers every write of a stream record to
`finalize_stream` of functions/main.py, served by functions-framework as in
Cloud Functions, and the function gives the stream's documents their final
`expiresAt`.
"""

from __future__ import annotations

import datetime
import json
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from google.cloud import firestore

from durable_streams import record as fields
from durable_streams.record import Lease, new_record
from firestore_emulator import Emulator
from support.servers import FUNCTIONS, Server, free_port, terminate_all
from support.sse import stream
from support.triggers import register_trigger, start_hooked_emulator

MAIN = FUNCTIONS / "main.py"
COLLECTION = f"streams-{secrets.token_hex(4)}"
WAIT_SECONDS = 30.0


@pytest.fixture(scope="module")
def function_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def hooked_emulator(
    function_port: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Emulator]:
    log_path = tmp_path_factory.mktemp("trigger-e2e") / "firestore.log"
    emulator = start_hooked_emulator(function_port, "demo-trigger-e2e", log_path)
    register_trigger(emulator, "finalize_stream", f"{COLLECTION}/{{streamId}}")
    yield emulator
    emulator.stop()


@pytest.fixture(scope="module")
def servers(
    hooked_emulator: Emulator,
    function_port: int,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Server, Server]]:
    """The finalize function and the test flows, on the hooked emulator."""
    logs = tmp_path_factory.mktemp("trigger-e2e-servers")
    env = {
        "FIRESTORE_EMULATOR_HOST": hooked_emulator.address,
        "GCLOUD_PROJECT": hooked_emulator.project,
        "FIRESTORE_STREAMS_COLLECTION": COLLECTION,
        "LOG_LEVEL": "INFO",
    }
    function = Server(
        source=MAIN,
        target="finalize_stream",
        port=function_port,
        env={**env, "FUNCTION_SIGNATURE_TYPE": "cloudevent"},
        log_path=logs / "finalize_stream.log",
    )
    flows = Server(env=env, log_path=logs / "flows.log")
    yield function.start(), flows.start()
    terminate_all([function, flows])


@pytest.fixture
def finalize_server(servers: tuple[Server, Server]) -> Server:
    return servers[0]


@pytest.fixture
def flows_server(servers: tuple[Server, Server]) -> Server:
    return servers[1]


def _wait_for(condition: Callable[[], bool], description: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {WAIT_SECONDS} s waiting for {description}"
            )
        time.sleep(0.1)


def _expiries(ref: firestore.DocumentReference) -> tuple[Any, list[Any]]:
    record = ref.get().get(fields.EXPIRES_AT)
    chunks = [
        snapshot.get(fields.EXPIRES_AT)
        for snapshot in ref.collection(fields.CHUNKS).stream()
    ]
    return record, chunks


def _final_expiry(ref: firestore.DocumentReference) -> datetime.datetime:
    stored = ref.get()
    ended_at: datetime.datetime = stored.get(fields.ENDED_AT)
    return ended_at + datetime.timedelta(seconds=stored.get(fields.TTL_SECONDS))


def _log_lines(server: Server) -> list[dict[str, Any]]:
    lines = []
    for line in server.logs().splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def _finalized_lines(server: Server, stream_id: str) -> list[dict[str, Any]]:
    return [
        line
        for line in _log_lines(server)
        if line.get("stream_id") == stream_id
        and line["message"].startswith("Stream documents expire at")
    ]


def test_streamed_chunk_documents_get_final_expiry(
    hooked_db: firestore.Client, flows_server: Server, finalize_server: Server
) -> None:
    result = stream(flows_server.url("blast"), {"count": 40, "size": 20_000})
    assert result.final == {"result": {"sent": 40}}
    assert result.stream_id is not None
    ref = hooked_db.collection(COLLECTION).document(result.stream_id)
    final = _final_expiry(ref)

    _wait_for(
        lambda: _expiries(ref)[1] and set(_expiries(ref)[1]) == {final},
        "the chunk documents' final expiry",
    )

    record_expiry, chunk_expiries = _expiries(ref)
    assert record_expiry == final
    assert len(chunk_expiries) >= 2
    assert len(_finalized_lines(finalize_server, result.stream_id)) == 1


def test_stream_ended_without_producer_gets_final_expiry(
    hooked_db: firestore.Client, finalize_server: Server
) -> None:
    stream_id = secrets.token_urlsafe(16)
    ref = hooked_db.collection(COLLECTION).document(stream_id)
    now = datetime.datetime.now(datetime.UTC)
    lease = Lease("a-dead-producer", 1, now - datetime.timedelta(seconds=30))
    record = new_record(
        flow="countdown",
        input_json="5",
        owner=None,
        lease=lease,
        now=now - datetime.timedelta(seconds=60),
        ttl_seconds=45.0,
    )
    ref.create({**record, fields.TAIL_START: 2, fields.COUNT: 2})
    ref.collection(fields.CHUNKS).document(fields.segment_id(1)).create(
        {
            fields.FIRST: 0,
            fields.CHUNK_TEXTS: ['"a"', '"b"'],
            fields.EXPIRES_AT: now + datetime.timedelta(hours=24),
        }
    )

    # A reader marks the stream failed, but leaves expiresAt at its running
    # value, which a real reader would also update.
    ref.update(
        {
            fields.STATUS: "failed",
            fields.ERROR: {"status": "UNAVAILABLE", "message": "producer stopped"},
            fields.ENDED_AT: now,
        }
    )
    final = now + datetime.timedelta(seconds=45)

    _wait_for(lambda: _expiries(ref) == (final, [final]), "the final expiry")
    update_time = ref.get().update_time
    time.sleep(2)

    assert ref.get().update_time == update_time
    assert len(_finalized_lines(finalize_server, stream_id)) == 1


def test_trigger_logs_are_cloud_logging_json(
    hooked_db: firestore.Client, flows_server: Server, finalize_server: Server
) -> None:
    result = stream(flows_server.url("blast"), {"count": 6, "size": 20_000})
    assert result.stream_id is not None
    _wait_for(
        lambda: bool(_finalized_lines(finalize_server, result.stream_id or "")),
        "the trigger's log line",
    )

    [line] = _finalized_lines(finalize_server, result.stream_id)

    assert line["severity"] == "INFO"
    assert line["function"] == "finalize_stream"
    assert line["logger"] == "durable_streams.trigger"
    assert line["logging.googleapis.com/labels"] == {
        "function": "finalize_stream",
        "stream_id": result.stream_id,
    }
    assert line["logging.googleapis.com/sourceLocation"]["file"].endswith("trigger.py")
    non_json = [
        text
        for text in finalize_server.logs().splitlines()
        if text.strip() and not text.startswith("{")
    ]
    assert non_json == []
