"""Slow readers, many readers and many streams on one server instance.

The server runs with the THREADS of functions/.env, as deployed, because each
open SSE response occupies one of its threads.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import httpx
import pytest
from conftest import ServerFactory
from google.cloud import firestore

from durable_streams.wire import STREAM_ID_HEADER
from support.fault_report import FaultReport, assert_full_countdowns
from support.load import ServerProbe, deployed_threads, read_many
from support.readers import wait_for_end
from support.sse import iter_frames, request_parts, stream

BLAST = {"count": 160, "size": 250_000}
"""A stream of 40 MB in 160 chunks."""

STALLED_READERS = 8
MEMORY_BOUND_MIB = 100
"""Memory stalled readers may add to the server, far below the 640 MB that
16 readers holding a copy of the stream would take."""


class StalledReader:
    """A client that reads the first frame of a stream, then stops reading
    until `finish` is called."""

    def __init__(
        self,
        stack: contextlib.ExitStack,
        client: httpx.Client,
        url: str,
        *,
        data: Any = None,
        stream_id: str | None = None,
    ) -> None:
        headers, body = request_parts(data, stream_id)
        response = stack.enter_context(
            client.stream("POST", url, json=body, headers=headers)
        )
        self.stream_id: str = response.headers[STREAM_ID_HEADER]
        self._frames = iter_frames(response)
        self.frames = [next(self._frames)]

    def finish(self) -> list[dict[str, Any]]:
        """Read the rest of the stream and return every frame."""
        self.frames.extend(self._frames)
        return self.frames


def assert_whole_blast(fault_report: FaultReport, frames_per_reader: list[Any]) -> None:
    count = BLAST["count"]
    for frames in frames_per_reader:
        assert [frame["message"]["i"] for frame in frames[:-1]] == list(range(count))
        assert frames[-1] == {"result": {"sent": count}}

    seqs = [[frame["seq"] for frame in frames[:-1]] for frames in frames_per_reader]
    delivery = fault_report.check_delivery(count, *seqs)
    assert delivery.lost == 0
    assert delivery.duplicates == 0


@pytest.mark.fault
def test_stalled_readers_bound_server_memory(
    start_server: ServerFactory,
    db: firestore.Client,
    collection: str,
    fault_report: FaultReport,
) -> None:
    fault_report.scenario(f"{2 * STALLED_READERS} readers stop reading a 40 MB stream")
    server = start_server(env={"THREADS": deployed_threads()})
    url = server.url("blast")
    probe = ServerProbe(server)
    warm_up = stream(url, BLAST, timeout=120)
    assert warm_up.stream_id is not None
    stream(url, stream_id=warm_up.stream_id, timeout=120)
    baseline = probe.rss_mib()

    with (
        httpx.Client(timeout=120) as client,
        contextlib.ExitStack() as stack,
        probe.sampling(),
    ):
        starter = StalledReader(stack, client, url, data=BLAST)
        stalled = [starter] + [
            StalledReader(stack, client, url, stream_id=starter.stream_id)
            for _ in range(STALLED_READERS - 1)
        ]
        record = wait_for_end(db, collection, starter.stream_id, timeout=120)
        stalled += [
            StalledReader(stack, client, url, stream_id=starter.stream_id)
            for _ in range(STALLED_READERS)
        ]
        time.sleep(3)
        unhindered = stream(url, stream_id=starter.stream_id, timeout=120)
        stalled_peak = probe.peak_rss_mib
        frames = [reader.finish() for reader in stalled]

    # The producer finished while every reader of the stream was stalled.
    assert record["status"] == "done"
    assert_whole_blast(fault_report, [*frames, unhindered.frames])
    growth = stalled_peak - baseline
    assert growth < MEMORY_BOUND_MIB
    fault_report.figure(
        f"{len(stalled)} stalled readers of a 40 MB stream: server memory "
        f"{baseline:.0f} MiB before, peak {stalled_peak:.0f} MiB"
    )


@pytest.mark.fault
def test_200_readers_of_one_stream(
    start_server: ServerFactory, fault_report: FaultReport
) -> None:
    fault_report.scenario("200 concurrent readers of one stream on one server")
    readers = 200
    count = 20
    server = start_server(
        env={"THREADS": deployed_threads(), "COUNTDOWN_TICK_SECONDS": "0.25"}
    )
    probe = ServerProbe(server)
    baseline = probe.rss_mib()
    first = stream(server.url("countdown"), count, max_frames=1)
    assert first.stream_id is not None

    started = time.monotonic()
    with probe.sampling():
        results = read_many(
            [(server.url("countdown"), None, first.stream_id)] * readers
        )
    elapsed = time.monotonic() - started

    assert_full_countdowns(fault_report, results, count)
    assert server.listener_count() == 0
    finals = [result.arrivals[-1] for result in results]
    fault_report.figure(
        f"{readers} readers of one stream: all done in {elapsed:.1f} s, last "
        f"result {max(finals) - min(finals):.2f} s after the first; server "
        f"memory {baseline:.0f} MiB before, peak {probe.peak_rss_mib:.0f} MiB "
        f"and {probe.peak_threads} threads"
    )


@pytest.mark.fault
def test_50_streams_on_one_server(
    start_server: ServerFactory, fault_report: FaultReport
) -> None:
    fault_report.scenario("50 concurrent streams on one server")
    streams = 50
    count = 20
    server = start_server(
        env={"THREADS": deployed_threads(), "COUNTDOWN_TICK_SECONDS": "0.25"}
    )
    probe = ServerProbe(server)
    baseline = probe.rss_mib()

    started = time.monotonic()
    with probe.sampling():
        results = read_many([(server.url("countdown"), count, None)] * streams)
    elapsed = time.monotonic() - started

    assert len({result.stream_id for result in results}) == streams
    for result in results:
        assert_full_countdowns(fault_report, [result], count)
    assert server.listener_count() == 0
    fault_report.figure(
        f"{streams} streams of {count} chunks at 4 chunks/s: all done in "
        f"{elapsed:.1f} s (5 s each alone); server memory {baseline:.0f} MiB "
        f"before, peak {probe.peak_rss_mib:.0f} MiB and {probe.peak_threads} threads"
    )
