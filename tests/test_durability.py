"""Streams survive killed servers, vanished clients and failing flows."""

from __future__ import annotations

import signal
import time

import httpx
from conftest import ServerFactory
from google.cloud import firestore

from durable_streams.wire import STREAM_ID_HEADER
from support.servers import Server
from support.sse import SSE_HEADERS, iter_frames, stream


def wait_for_status(
    db: firestore.Client, collection: str, stream_id: str, timeout: float = 30.0
) -> dict[str, object]:
    """Wait until the stream record has ended; return its fields."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        snapshot = db.collection(collection).document(stream_id).get()
        data = snapshot.to_dict() or {}
        if data.get("status") not in (None, "running"):
            return data
        time.sleep(0.1)
    raise AssertionError(f"stream {stream_id} did not end in {timeout} s")


def test_sigkill_mid_countdown_then_restart_replays_committed(
    start_server: ServerFactory,
) -> None:
    server = start_server(
        env={"COUNTDOWN_TICK_SECONDS": "0.2", "STREAM_LEASE_SECONDS": "3"}
    )
    before = stream(server.url("countdown"), 20, max_frames=5)
    assert before.stream_id is not None

    server.kill(signal.SIGKILL)
    server.start()
    after = stream(server.url("countdown"), stream_id=before.stream_id)

    assert after.status_code == 200
    assert after.chunks[:5] == before.chunks
    # countdown is resumable, so the restarted server takes the stream over
    # once the dead producer's lease runs out and finishes it.
    assert after.seqs == list(range(20))
    assert [chunk["count"] for chunk in after.chunks] == list(range(20, 0, -1))
    assert after.final == {"result": "Liftoff!"}
    after.assert_one_final_frame_last()


def test_sigkill_of_unresumable_flow_fails_stream(
    start_server: ServerFactory, db: firestore.Client, collection: str
) -> None:
    server = start_server(env={"STREAM_LEASE_SECONDS": "3"})
    before = stream(server.url("think"), {"seconds": 60}, max_frames=0, timeout=10)
    assert before.stream_id is not None

    server.kill(signal.SIGKILL)
    server.start()
    after = stream(server.url("think"), stream_id=before.stream_id)

    assert after.chunks == []
    assert after.final is not None
    assert after.final["error"]["status"] == "UNAVAILABLE"
    assert "producer stopped" in after.final["error"]["message"]
    record = wait_for_status(db, collection, before.stream_id)
    assert record["status"] == "failed"


def test_flow_error_live_and_on_reconnect(server: Server) -> None:
    data = {"after": 3, "status": "FAILED_PRECONDITION", "message": "no quota left"}
    live = stream(server.url("fail"), data)
    assert live.stream_id is not None
    replay = stream(server.url("fail"), stream_id=live.stream_id)

    expected_error = {
        "error": {"status": "FAILED_PRECONDITION", "message": "no quota left"}
    }
    assert live.chunks == [0, 1, 2]
    assert live.final == expected_error
    live.assert_one_final_frame_last()
    assert replay.frames == live.frames


def test_flow_error_message_with_lone_surrogate(server: Server) -> None:
    # Firestore stores only valid UTF-8, so the lone surrogate in the
    # message becomes U+FFFD instead of failing the write of the error.
    body = b'{"data": {"after": 1, "message": "bad \\ud800 input"}}'
    with httpx.stream(
        "POST", server.url("fail"), content=body, headers=SSE_HEADERS, timeout=30
    ) as response:
        live = list(iter_frames(response))
    replay = stream(server.url("fail"), stream_id=response.headers[STREAM_ID_HEADER])

    expected_error = {"error": {"status": "ABORTED", "message": "bad \ufffd input"}}
    assert live == [{"message": 0, "seq": 0}, expected_error]
    assert replay.frames == live


def test_flow_crash_sends_generic_internal_error(server: Server) -> None:
    headers = {**SSE_HEADERS}
    with httpx.Client(timeout=30) as client:
        live = client.post(server.url("crash"), json={"data": None}, headers=headers)
        stream_id = live.headers[STREAM_ID_HEADER]
        replay = client.post(
            server.url("crash"),
            json={},
            headers={**headers, STREAM_ID_HEADER: stream_id},
        )

    for response in (live, replay):
        assert response.status_code == 200
        assert "hunter2" not in response.text
        assert "Traceback" not in response.text
        assert response.text.endswith(
            'data: {"error":{"status":"INTERNAL","message":"Internal error."}}\n\n'
        )
    assert "hunter2" in server.logs(), "the details belong in the server log"
    assert stream_id in server.logs()


def test_flow_crash_in_plain_call_sends_generic_error(server: Server) -> None:
    response = httpx.post(server.url("crash"), json={"data": None})

    assert response.status_code == 500
    assert response.json() == {
        "error": {"status": "INTERNAL", "message": "Internal error."}
    }


def test_client_disconnect_at_once_flow_completes(
    start_server: ServerFactory, db: firestore.Client, collection: str
) -> None:
    server = start_server(env={"COUNTDOWN_TICK_SECONDS": "0.1"})
    with (
        httpx.Client(timeout=10) as client,
        client.stream(
            "POST", server.url("countdown"), json={"data": 8}, headers=SSE_HEADERS
        ) as response,
    ):
        stream_id = response.headers[STREAM_ID_HEADER]
    # The connection is closed before any chunk was read.

    record = wait_for_status(db, collection, stream_id)
    assert record["status"] == "done"
    assert record["result"] == '"Liftoff!"'

    replay = stream(server.url("countdown"), stream_id=stream_id)
    assert replay.seqs == list(range(8))
    assert replay.final == {"result": "Liftoff!"}


def test_dropped_readers_of_silent_stream_free_threads(
    start_server: ServerFactory,
) -> None:
    server = start_server(env={"THREADS": "4"})
    first = stream(server.url("think"), {"seconds": 90}, max_frames=0, timeout=30)
    assert first.stream_id is not None

    # Genkit's dialect has no keep-alive, so nothing is written to these
    # connections until the flow sends a chunk. Each reader whose client has
    # gone must still free its thread, or the server stops responding.
    for _ in range(6):
        dropped = stream(
            server.url("think"), stream_id=first.stream_id, max_frames=0, timeout=30
        )
        assert dropped.status_code == 200

    response = httpx.post(
        server.url("think/cancel"),
        headers={STREAM_ID_HEADER: first.stream_id},
        timeout=30,
    )
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"


def test_record_has_expiry_from_creation(
    server: Server, db: firestore.Client, collection: str
) -> None:
    first = stream(server.url("think"), {"seconds": 1}, max_frames=0, timeout=10)
    assert first.stream_id is not None

    running = db.collection(collection).document(first.stream_id).get().to_dict()
    assert running is not None
    assert running["status"] == "running"
    assert running["expiresAt"] > running["createdAt"]

    ended = wait_for_status(db, collection, first.stream_id)
    assert ended["expiresAt"] > ended["endedAt"]
