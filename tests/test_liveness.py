"""Readers tell a quiet live stream from a dead one, and never wait forever."""

from __future__ import annotations

import datetime
import signal
import time

import pytest
from conftest import ServerFactory
from google.cloud import firestore

from durable_streams.config import StreamOptions
from durable_streams.recovery import DEAD_PRODUCER_MESSAGE, LEASE_GRACE
from support.fault_report import FaultReport
from support.readers import BackgroundReader, read_record, wait_for_count
from support.sse import stream

pytestmark = pytest.mark.fault

DEAD_PRODUCER_ERROR = {
    "error": {"status": "UNAVAILABLE", "message": DEAD_PRODUCER_MESSAGE}
}


def test_quiet_flow_outlives_reader_timeout(
    start_server: ServerFactory, fault_report: FaultReport
) -> None:
    fault_report.scenario("flow silent for 3x the reader timeout")
    env = {"STREAM_TIMEOUT_SECONDS": "5", "STREAM_LEASE_SECONDS": "3"}
    producer = start_server(env=env)
    other = start_server(env=env)

    first = stream(producer.url("think"), {"seconds": 15}, max_frames=0)
    assert first.stream_id is not None
    local = BackgroundReader(producer.url("think"), stream_id=first.stream_id)
    remote = BackgroundReader(other.url("think"), stream_id=first.stream_id)
    results = [local.result(), remote.result()]

    for result in results:
        assert result.chunks == ["thought"]
        assert result.final == {"result": "done"}
        result.assert_one_final_frame_last()
    delivery = fault_report.check_delivery(1, *(result.seqs for result in results))
    assert delivery.lost == 0
    assert delivery.duplicates == 0
    fault_report.figure("a flow silent for 15 s outlived a reader timeout of 5 s")


@pytest.mark.parametrize("lease", ["3", None], ids=["lease-3s", "default-lease"])
def test_dead_producer_fails_stream_for_readers(
    start_server: ServerFactory,
    db: firestore.Client,
    collection: str,
    fault_report: FaultReport,
    lease: str | None,
) -> None:
    fault_report.scenario(f"SIGKILL of an unresumable flow's producer, {lease=}")
    env = {"STREAM_LEASE_SECONDS": lease} if lease else {}
    producer = start_server(env=env)
    other = start_server(env=env)
    first = stream(producer.url("ticker"), {"count": 10_000, "tick": 0.1}, max_frames=1)
    stream_id = first.stream_id
    assert stream_id is not None
    early = BackgroundReader(other.url("ticker"), stream_id=stream_id)
    wait_for_count(db, collection, stream_id, 5)

    producer.kill(signal.SIGKILL)
    killed_at = time.monotonic()
    time.sleep(1.0)
    late = BackgroundReader(other.url("ticker"), stream_id=stream_id)
    early_result = early.result()
    late_result = late.result()

    record = read_record(db, collection, stream_id)
    assert record is not None
    assert record["status"] == "failed"
    assert record["error"] == DEAD_PRODUCER_ERROR["error"]
    ttl = datetime.timedelta(seconds=StreamOptions().ttl)
    assert record["expiresAt"] == record["endedAt"] + ttl
    for result in (early_result, late_result):
        assert result.final == DEAD_PRODUCER_ERROR
        result.assert_one_final_frame_last()
        assert result.chunks == list(range(record["count"]))

    delivery = fault_report.check_delivery(
        record["count"], early_result.seqs, late_result.seqs
    )
    assert delivery.lost == 0
    assert delivery.duplicates == 0
    waited = early_result.arrivals[-1] - killed_at
    fault_report.dead_wait(waited)
    fault_report.dead_wait(late_result.arrivals[-1] - late.started_at)
    fault_report.figure(
        f"dead producer ({lease or 15} s lease) reported after {waited:.1f} s"
    )


def test_default_lease_detects_dead_producer_within_30_s() -> None:
    options = StreamOptions()

    # A lease renewed at the last moment runs for `lease` seconds; readers act
    # `LEASE_GRACE` after its end.
    assert options.lease + LEASE_GRACE <= 30
    assert options.timeout > options.lease + LEASE_GRACE
