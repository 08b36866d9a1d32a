"""Cancelling a stream over HTTP: the flow stops and every reader gets a
final CANCELLED frame."""

from __future__ import annotations

import datetime
import signal

import httpx
import pytest
from conftest import ServerFactory
from google.cloud import firestore

from durable_streams.config import StreamOptions
from durable_streams.wire import STREAM_ID_HEADER
from support.auth_emulator import AuthEmulator
from support.fault_report import FaultReport
from support.readers import BackgroundReader, read_record, wait_for, wait_for_count
from support.servers import Server
from support.sse import stream

CANCELLED_ERROR = {
    "error": {"status": "CANCELLED", "message": "The stream was cancelled."}
}


def cancel(
    server: Server,
    flow: str,
    stream_id: str | None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    request_headers = dict(headers or {})
    if stream_id is not None:
        request_headers[STREAM_ID_HEADER] = stream_id
    return httpx.post(server.url(f"{flow}/cancel"), headers=request_headers, timeout=30)


def assert_error(response: httpx.Response, http_code: int, status: str) -> None:
    assert response.status_code == http_code
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["status"] == status


@pytest.mark.fault
def test_cancel_on_other_server_stops_flow(
    start_server: ServerFactory,
    db: firestore.Client,
    collection: str,
    fault_report: FaultReport,
) -> None:
    fault_report.scenario("cancel through another server than the producer's")
    producer = start_server()
    other = start_server()
    first = stream(producer.url("ticker"), {"count": 1000, "tick": 0.1}, max_frames=1)
    stream_id = first.stream_id
    assert stream_id is not None
    readers = [
        BackgroundReader(server.url("ticker"), stream_id=stream_id)
        for server in (producer, other)
    ]
    wait_for_count(db, collection, stream_id, 5)

    response = cancel(other, "ticker", stream_id)
    results = [reader.result() for reader in readers]

    assert response.status_code == 200
    assert response.json() == {"streamId": stream_id, "status": "cancelled"}
    record = read_record(db, collection, stream_id)
    assert record is not None
    assert record["status"] == "cancelled"
    assert record["cancelRequested"] is True
    assert record["error"] == CANCELLED_ERROR["error"]
    ttl = datetime.timedelta(seconds=StreamOptions().ttl)
    assert record["expiresAt"] == record["endedAt"] + ttl
    for result in results:
        assert result.final == CANCELLED_ERROR
        result.assert_one_final_frame_last()
        assert result.chunks == list(range(record["count"]))
    delivery = fault_report.check_delivery(
        record["count"], *(result.seqs for result in results)
    )
    assert delivery.lost == 0
    assert delivery.duplicates == 0
    stopped = f"ticker flow stopped after {record['count']} chunks"
    wait_for(lambda: stopped in producer.logs(), "the flow to stop", timeout=10)


@pytest.mark.fault
def test_cancel_of_dead_resumable_stream(
    start_server: ServerFactory,
    db: firestore.Client,
    collection: str,
    fault_report: FaultReport,
) -> None:
    fault_report.scenario("cancel of a resumable stream whose producer was killed")
    env = {"STREAM_LEASE_SECONDS": "3", "COUNTDOWN_TICK_SECONDS": "0.2"}
    producer = start_server(env=env)
    other = start_server(env=env)
    first = stream(producer.url("countdown"), 100, max_frames=3)
    stream_id = first.stream_id
    assert stream_id is not None
    producer.kill(signal.SIGKILL)

    response = cancel(other, "countdown", stream_id)
    replay = stream(other.url("countdown"), stream_id=stream_id)

    # The lease runs out within the 5 s the cancel request waits, and the
    # stream ends as cancelled instead of being resumed.
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert replay.final == CANCELLED_ERROR
    record = read_record(db, collection, stream_id)
    assert record is not None
    assert record["status"] == "cancelled"
    assert "Took over stream" not in other.logs()
    delivery = fault_report.check_delivery(record["count"], replay.seqs)
    assert delivery.lost == 0
    assert delivery.duplicates == 0


def test_cancel_of_ended_stream_keeps_status(server: Server) -> None:
    done = stream(server.url("countdown"), 2)
    assert done.stream_id is not None

    response = cancel(server, "countdown", done.stream_id)

    assert response.status_code == 200
    assert response.json() == {"streamId": done.stream_id, "status": "done"}
    replay = stream(server.url("countdown"), stream_id=done.stream_id)
    assert replay.frames == done.frames


def test_cancel_twice_answers_cancelled(server: Server) -> None:
    first = stream(server.url("ticker"), {"count": 1000, "tick": 0.1}, max_frames=1)
    assert first.stream_id is not None

    responses = [cancel(server, "ticker", first.stream_id) for _ in range(2)]

    for response in responses:
        assert response.status_code == 200
        assert response.json()["status"] == "cancelled"


@pytest.mark.parametrize(
    "stream_id",
    ["AAAAAAAAAAAAAAAAAAAAAA", "Zm9vYmFyYmF6cXV4cXV1eA"],
    ids=["unknown", "never-issued"],
)
def test_cancel_unknown_stream_gets_404(server: Server, stream_id: str) -> None:
    response = cancel(server, "countdown", stream_id)

    assert_error(response, 404, "NOT_FOUND")


def test_cancel_expired_stream_gets_404(start_server: ServerFactory) -> None:
    server = start_server(env={"STREAM_TTL_SECONDS": "0.5"})
    done = stream(server.url("countdown"), 1)
    assert done.stream_id is not None

    def expired() -> bool:
        return cancel(server, "countdown", done.stream_id).status_code == 404

    wait_for(expired, "the stream to expire", timeout=10)


@pytest.mark.parametrize("stream_id", [None, "", "../other", "x" * 23])
def test_cancel_without_valid_id_gets_400(
    server: Server, stream_id: str | None
) -> None:
    response = cancel(server, "countdown", stream_id)

    assert_error(response, 400, "INVALID_ARGUMENT")
    assert STREAM_ID_HEADER in response.json()["error"]["message"]


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_cancel_with_other_method_gets_405(server: Server, method: str) -> None:
    response = httpx.request(
        method,
        server.url("countdown/cancel"),
        headers={STREAM_ID_HEADER: "AAAAAAAAAAAAAAAAAAAAAA"},
    )

    assert_error(response, 405, "INVALID_ARGUMENT")
    assert response.headers["allow"] == "POST, OPTIONS"


def test_cancel_preflight_allows_stream_id_header(server: Server) -> None:
    response = httpx.options(
        server.url("countdown/cancel"),
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": STREAM_ID_HEADER,
        },
    )

    assert response.status_code == 200
    allowed = response.headers["access-control-allow-headers"].lower()
    assert STREAM_ID_HEADER.lower() in allowed


def test_cancel_of_other_users_stream_gets_404(
    start_server: ServerFactory,
    auth_emulator: AuthEmulator,
    db: firestore.Client,
    collection: str,
) -> None:
    server = start_server(
        env={
            "STREAM_AUTH": "required",
            "FIREBASE_AUTH_EMULATOR_HOST": auth_emulator.address,
        }
    )
    alice = auth_emulator.sign_up()
    bob = auth_emulator.sign_up()
    data = {"count": 1000, "tick": 0.1}
    first = stream(server.url("ticker"), data, headers=alice.headers, max_frames=1)
    assert first.stream_id is not None

    by_stranger = cancel(server, "ticker", first.stream_id, bob.headers)
    unknown = cancel(server, "ticker", "AAAAAAAAAAAAAAAAAAAAAA", bob.headers)
    anonymous = cancel(server, "ticker", first.stream_id)
    record = read_record(db, collection, first.stream_id)
    by_owner = cancel(server, "ticker", first.stream_id, alice.headers)

    assert by_stranger.status_code == 404
    assert by_stranger.content == unknown.content
    assert anonymous.status_code == 401
    assert record is not None
    assert record["cancelRequested"] is False
    assert by_owner.status_code == 200
    assert by_owner.json()["status"] == "cancelled"
