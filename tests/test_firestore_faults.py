"""Streams while Firestore pauses or dies: they complete or fail clearly.

The emulator keeps its data in memory only. A pause keeps every document, so
writes retried after it succeed and the stream completes. A killed emulator
loses every stream it held, so a stream it held cannot complete: every reader
gets an error frame within a bounded time, the flow stops, and the servers
serve new streams once the emulator is back.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import PROJECT, ServerFactory
from google.cloud import firestore

from durable_streams.producer import UNSAVED_MESSAGE
from durable_streams.reader import GONE_MESSAGE
from support.emulators import OwnEmulator
from support.fault_report import FaultReport, assert_full_countdowns
from support.readers import BackgroundReader, read_record, wait_for, wait_for_count
from support.servers import Server
from support.sse import StreamResult, stream

pytestmark = pytest.mark.fault

COLLECTION = "streams"


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[OwnEmulator]:
    """An emulator of this test's own: pausing or killing it affects no other
    test."""
    own = OwnEmulator(PROJECT, tmp_path / "emulator.log").start()
    yield own
    own.stop()


@pytest.fixture
def emulator_db(emulator: OwnEmulator) -> Iterator[firestore.Client]:
    client = emulator.client()
    yield client
    client.close()


def start_servers(
    start_server: ServerFactory, emulator: OwnEmulator, **env: str
) -> tuple[Server, Server]:
    """Start a producer and another server on the test's own emulator."""
    settings = {
        "FIRESTORE_EMULATOR_HOST": emulator.address,
        "FIRESTORE_STREAMS_COLLECTION": COLLECTION,
        "FIRESTORE_RPC_TIMEOUT_SECONDS": "2",
        "STREAM_LEASE_SECONDS": "3",
        "COUNTDOWN_TICK_SECONDS": "0.1",
        **env,
    }
    return start_server(env=settings), start_server(env=settings)


def follow_from_both(
    producer: Server, other: Server, flow: str, data: object
) -> tuple[str, list[BackgroundReader]]:
    """Start a stream on `producer` and follow it from both servers."""
    first = stream(producer.url(flow), data, max_frames=1)
    assert first.stream_id is not None
    readers = [
        BackgroundReader(server.url(flow), stream_id=first.stream_id)
        for server in (producer, other)
    ]
    return first.stream_id, readers


def assert_prefix_then_error(
    fault_report: FaultReport, results: list[StreamResult], error: dict[str, str]
) -> None:
    """Check that each reader got chunks 0, 1, ... in order, once each, and
    then the error frame."""
    for result in results:
        assert result.final == {"error": error}
        result.assert_one_final_frame_last()
        assert result.chunks == list(range(len(result.chunks)))

    sent = max(len(result.chunks) for result in results)
    delivery = fault_report.check_delivery(sent, *(r.seqs for r in results))
    assert delivery.duplicates == 0


def test_paused_emulator_stream_completes(
    start_server: ServerFactory,
    emulator: OwnEmulator,
    emulator_db: firestore.Client,
    fault_report: FaultReport,
) -> None:
    fault_report.scenario("Firestore emulator paused for 6 s mid-stream")
    count = 80
    producer, other = start_servers(start_server, emulator)
    stream_id, readers = follow_from_both(producer, other, "countdown", count)
    wait_for_count(emulator_db, COLLECTION, stream_id, 10)

    emulator.pause()
    try:
        time.sleep(6)
    finally:
        emulator.resume()
    results = [reader.result() for reader in readers]

    assert_full_countdowns(fault_report, results, count)
    record = read_record(emulator_db, COLLECTION, stream_id)
    assert record is not None
    assert record["status"] == "done"
    logs = producer.logs() + other.logs()
    assert "retrying in" in logs or "trying again later" in logs


def test_killed_emulator_ends_readers_with_error(
    start_server: ServerFactory,
    emulator: OwnEmulator,
    emulator_db: firestore.Client,
    fault_report: FaultReport,
) -> None:
    fault_report.scenario("Firestore emulator killed mid-stream, back after 2 s")
    producer, other = start_servers(start_server, emulator)
    stream_id, readers = follow_from_both(
        producer, other, "ticker", {"count": 10_000, "tick": 0.1}
    )
    wait_for_count(emulator_db, COLLECTION, stream_id, 5)

    emulator.kill()
    time.sleep(2)
    restarted_at = time.monotonic()
    emulator.start()
    results = [reader.result() for reader in readers]

    assert_prefix_then_error(
        fault_report, results, {"status": "NOT_FOUND", "message": GONE_MESSAGE}
    )
    assert "retrying in" in producer.logs()
    wait_for(lambda: "ticker flow stopped" in producer.logs(), "the flow to stop")
    reconnect = stream(other.url("ticker"), stream_id=stream_id)
    assert reconnect.status_code == 204
    fresh = stream(producer.url("countdown"), 3)
    assert fresh.final == {"result": "Liftoff!"}

    waited = max(result.arrivals[-1] for result in results) - restarted_at
    fault_report.dead_wait(waited)
    fault_report.figure(f"emulator killed: readers told {waited:.1f} s after restart")


def test_emulator_down_past_retry_deadline(
    start_server: ServerFactory,
    emulator: OwnEmulator,
    fault_report: FaultReport,
) -> None:
    fault_report.scenario("Firestore emulator down past the write retry deadline")
    producer, other = start_servers(
        start_server,
        emulator,
        STREAM_RETRY_DEADLINE_SECONDS="4",
        STREAM_TIMEOUT_SECONDS="10",
    )
    stream_id, readers = follow_from_both(
        producer, other, "ticker", {"count": 10_000, "tick": 0.1}
    )
    wait_for(
        lambda: len(producer.commits(stream_id)) >= 5, "a few writes of the stream"
    )

    emulator.kill()
    killed_at = time.monotonic()
    try:
        local, remote = (reader.result() for reader in readers)
    finally:
        emulator.start()

    # The producer's server sees its writes fail. The other server can reach
    # no one, so it gives up after the reader timeout.
    assert_prefix_then_error(
        fault_report, [local], {"status": "UNAVAILABLE", "message": UNSAVED_MESSAGE}
    )
    assert remote.final is not None
    assert remote.final["error"]["status"] == "DEADLINE_EXCEEDED"
    assert_prefix_then_error(fault_report, [remote], remote.final["error"])
    for result in (local, remote):
        fault_report.dead_wait(result.arrivals[-1] - killed_at)
    fault_report.figure(
        "emulator down: producer's readers told after "
        f"{local.arrivals[-1] - killed_at:.1f} s, others after "
        f"{remote.arrivals[-1] - killed_at:.1f} s"
    )
