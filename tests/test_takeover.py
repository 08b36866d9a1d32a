"""A resumable stream whose producer dies is resumed elsewhere, exactly once."""

from __future__ import annotations

import os
import signal
import time

import pytest
from conftest import ServerFactory
from google.cloud import firestore

from durable_streams.producer import LEASE_LOST_LOG
from durable_streams.reader import SHUTDOWN_MESSAGE
from support.fault_report import FaultReport, assert_full_countdowns
from support.readers import BackgroundReader, read_record, wait_for, wait_for_count
from support.sse import StreamResult, stream

pytestmark = pytest.mark.fault

ENV = {"COUNTDOWN_TICK_SECONDS": "0.2", "STREAM_LEASE_SECONDS": "3"}
TAKEOVER_LOG = "Took over stream whose producer stopped"


def assert_done_by_second_producer(
    db: firestore.Client, collection: str, stream_id: str
) -> None:
    record = read_record(db, collection, stream_id)
    assert record is not None
    assert record["status"] == "done"
    assert record["lease"]["token"] == 2


def resumed_after(result: StreamResult, position: int, moment: float) -> float:
    """Return how long after `moment` the chunk at `position` reached a reader."""
    index = result.seqs.index(position)
    return result.arrivals[index] - moment


def test_takeover_after_sigkill_loses_and_repeats_nothing(
    start_server: ServerFactory,
    db: firestore.Client,
    collection: str,
    fault_report: FaultReport,
) -> None:
    fault_report.scenario(
        "SIGKILL of a resumable flow's producer; 3 readers, 2 servers"
    )
    count = 30
    producer = start_server(env=ENV)
    followers = [start_server(env=ENV), start_server(env=ENV)]
    first = stream(producer.url("countdown"), count, max_frames=1)
    stream_id = first.stream_id
    assert stream_id is not None
    readers = [
        BackgroundReader(server.url("countdown"), stream_id=stream_id)
        for server in (followers[0], followers[0], followers[1])
    ]
    wait_for_count(db, collection, stream_id, 8)

    producer.kill(signal.SIGKILL)
    killed_at = time.monotonic()
    committed = read_record(db, collection, stream_id)
    assert committed is not None
    results = [reader.result() for reader in readers]

    assert_full_countdowns(fault_report, results, count)
    assert_done_by_second_producer(db, collection, stream_id)
    takeovers = sum(server.logs().count(TAKEOVER_LOG) for server in followers)
    assert takeovers == 1
    replay = stream(followers[1].url("countdown"), stream_id=stream_id)
    assert replay.frames == results[0].frames

    waited = max(resumed_after(r, committed["count"], killed_at) for r in results)
    fault_report.dead_wait(waited)
    fault_report.figure(f"takeover after SIGKILL: chunks resumed after {waited:.1f} s")


def test_paused_producer_is_fenced_after_takeover(
    start_server: ServerFactory,
    db: firestore.Client,
    collection: str,
    fault_report: FaultReport,
) -> None:
    fault_report.scenario("SIGSTOP of a producer until another took over, then SIGCONT")
    count = 40
    paused = start_server(env=ENV)
    other = start_server(env=ENV)
    first = stream(paused.url("countdown"), count, max_frames=1)
    stream_id = first.stream_id
    assert stream_id is not None
    readers = [
        BackgroundReader(server.url("countdown"), stream_id=stream_id)
        for server in (paused, other)
    ]
    wait_for_count(db, collection, stream_id, 5)

    paused.kill(signal.SIGSTOP)
    paused_at = time.monotonic()
    try:
        frozen = read_record(db, collection, stream_id)
        assert frozen is not None

        def taken_over() -> bool:
            record = read_record(db, collection, stream_id) or {}
            return record["lease"]["token"] == 2 and record["count"] >= 15

        wait_for(taken_over, "another server to take over and go on")
    finally:
        paused.kill(signal.SIGCONT)
    wait_for(lambda: LEASE_LOST_LOG in paused.logs(), "the paused producer to stop")
    results = [reader.result() for reader in readers]

    assert_full_countdowns(fault_report, results, count)
    assert_done_by_second_producer(db, collection, stream_id)
    assert TAKEOVER_LOG in other.logs()
    assert TAKEOVER_LOG not in paused.logs()

    waited = resumed_after(results[1], frozen["count"], paused_at)
    fault_report.dead_wait(waited)
    fault_report.figure(f"takeover after SIGSTOP: chunks resumed after {waited:.1f} s")


@pytest.mark.parametrize(
    ("stop_signal", "reader_on_stopping_server"),
    [
        (signal.SIGTERM, False),
        (signal.SIGTERM, True),
        # gunicorn's quick shutdown: SIGINT to its master, which sends SIGQUIT
        # to the worker. A terminal's Ctrl+C also reaches the worker, whose
        # quit handler can then deadlock, so scripts/run sends SIGTERM instead.
        (signal.SIGINT, False),
    ],
    ids=["sigterm", "sigterm-reader-on-stopping-server", "sigint"],
)
def test_stop_signal_hands_stream_over_at_once(
    start_server: ServerFactory,
    db: firestore.Client,
    collection: str,
    fault_report: FaultReport,
    stop_signal: signal.Signals,
    reader_on_stopping_server: bool,
) -> None:
    fault_report.scenario(
        f"{stop_signal.name} of a producer with a 30 s lease, "
        f"{reader_on_stopping_server=}"
    )
    count = 40
    env = {**ENV, "STREAM_LEASE_SECONDS": "30"}
    stopping = start_server(env=env)
    other = start_server(env=env)
    first = stream(stopping.url("countdown"), count, max_frames=1)
    stream_id = first.stream_id
    assert stream_id is not None
    reader_server = stopping if reader_on_stopping_server else other
    reader = BackgroundReader(reader_server.url("countdown"), stream_id=stream_id)
    wait_for_count(db, collection, stream_id, 5)

    assert stopping.process is not None
    if stop_signal is signal.SIGINT:
        os.kill(stopping.process.pid, stop_signal)
    else:
        os.killpg(stopping.process.pid, stop_signal)
    stopped_at = time.monotonic()
    if reader_on_stopping_server:
        cut = reader.result()
        assert cut.final == {
            "error": {"status": "UNAVAILABLE", "message": SHUTDOWN_MESSAGE}
        }
        assert cut.seqs == list(range(len(cut.seqs)))
        # The client reconnects, and lands on another instance.
        reader = BackgroundReader(other.url("countdown"), stream_id=stream_id)

    def taken_over() -> bool:
        record = read_record(db, collection, stream_id) or {}
        return record["lease"]["token"] == 2

    # Without the release, another instance would wait for the 30 s lease.
    wait_for(taken_over, "another server to take the stream over", timeout=20)
    resumed_after_seconds = time.monotonic() - stopped_at
    result = reader.result()
    stopping.process.wait(timeout=30)

    assert_full_countdowns(fault_report, [result], count)
    assert_done_by_second_producer(db, collection, stream_id)
    assert "Released the lease" in stopping.logs()
    assert TAKEOVER_LOG in other.logs()
    fault_report.dead_wait(resumed_after_seconds)
    fault_report.figure(
        f"takeover after {stop_signal.name} ({reader_on_stopping_server=}): "
        f"{resumed_after_seconds:.1f} s with a 30 s lease"
    )
