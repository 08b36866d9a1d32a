"""The scheduled sweep ends streams whose producer died while no client followed
them, and changes no other stream."""

from __future__ import annotations

import datetime
import signal
import time
from typing import Any

import httpx
import pytest
from conftest import ServerFactory
from google.cloud import firestore

from countdown import countdown_flow
from durable_streams.config import StreamOptions
from durable_streams.hub import StreamHub
from durable_streams.recovery import DEAD_PRODUCER_MESSAGE, Recovery
from durable_streams.store import StreamStore, utc_now
from durable_streams.sweep import SweepReport, sweep
from support.readers import read_record, wait_for_count
from support.servers import FUNCTIONS
from support.sse import stream

pytestmark = pytest.mark.fault

LEASE_SECONDS = 2


def _record(db: firestore.Client, collection: str, stream_id: str) -> dict[str, Any]:
    record = read_record(db, collection, stream_id)
    assert record is not None, stream_id
    return record


def _start(url: str, data: object) -> str:
    started = stream(url, data, max_frames=1)
    assert started.stream_id is not None
    return started.stream_id


def test_sweep_ends_dead_unfollowed_streams(
    start_server: ServerFactory, db: firestore.Client, collection: str
) -> None:
    env = {"STREAM_LEASE_SECONDS": str(LEASE_SECONDS)}
    doomed = start_server(env=env)
    healthy = start_server(env=env)
    ticker = {"count": 10_000, "tick": 0.1}
    dead = _start(doomed.url("ticker"), ticker)
    dead_resumable = _start(doomed.url("countdown"), 1_000)
    dead_cancelled = _start(doomed.url("ticker"), ticker)
    alive = _start(healthy.url("ticker"), ticker)
    wait_for_count(db, collection, dead, 3)
    doomed.kill(signal.SIGKILL)
    # A cancel request that no producer saw: the sweep ends it as cancelled.
    db.collection(collection).document(dead_cancelled).update({"cancelRequested": True})

    store = StreamStore(db, collection)
    recovery = Recovery(store, StreamHub(store), "sweep-test")
    assert countdown_flow.resumable
    time.sleep(LEASE_SECONDS + 2)
    report = sweep(recovery, utc_now())

    assert report == SweepReport(ended=2, left_for_resumption=1)
    ttl = datetime.timedelta(seconds=StreamOptions().ttl)
    failed = _record(db, collection, dead)
    cancelled = _record(db, collection, dead_cancelled)
    assert failed["status"] == "failed"
    assert failed["error"] == {
        "status": "UNAVAILABLE",
        "message": DEAD_PRODUCER_MESSAGE,
    }
    assert cancelled["status"] == "cancelled"
    for record in (failed, cancelled):
        assert record["expiresAt"] == record["endedAt"] + ttl
    assert _record(db, collection, dead_resumable)["status"] == "running"
    assert _record(db, collection, alive)["status"] == "running"

    assert sweep(recovery, utc_now()) == SweepReport(left_for_resumption=1)

    resumed = stream(healthy.url("countdown"), stream_id=dead_resumable, max_frames=3)
    assert resumed.chunks
    assert _record(db, collection, alive)["status"] == "running"


def test_scheduled_sweep_over_http(
    start_server: ServerFactory, db: firestore.Client, collection: str
) -> None:
    """Call the deployed function with the headers that Cloud Scheduler sends."""
    doomed = start_server(env={"STREAM_LEASE_SECONDS": str(LEASE_SECONDS)})
    sweeper = start_server(source=FUNCTIONS / "main.py", target="sweep_streams")
    dead = _start(doomed.url("ticker"), {"count": 10_000, "tick": 0.1})
    doomed.kill(signal.SIGKILL)
    time.sleep(LEASE_SECONDS + 2)

    response = httpx.post(
        sweeper.url("/"),
        headers={
            "X-CloudScheduler-JobName": "firebase-schedule-sweep_streams",
            "X-CloudScheduler-ScheduleTime": "2026-12-04T20:00:00Z",
        },
        timeout=60,
    )

    assert response.status_code == 200, response.text
    assert _record(db, collection, dead)["status"] == "failed"
    assert "Swept streams of dead producers: 1 ended" in sweeper.logs()
