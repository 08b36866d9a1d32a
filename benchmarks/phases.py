"""The measurements, each run the same way against either server pair.

A `Side` is one implementation: two server processes of it (the primary,
where streams start, and the secondary, "another instance") on the same
Firestore emulator. Every measurement drives the side's servers over HTTP
only, so both implementations are measured by the same client code.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import httpx
from google.cloud import firestore

from .client import Reading, follow_stream, in_thread, start_stream
from .servers import MemorySampler, ServerProcess

FLOW_PATH = "countdown"

LOAD_READ_TIMEOUT = 300.0
"""Seconds a client of the memory load waits between two pieces of data.
Genkit's servers fall behind under that load: their clients wait for the
final frame until the write queues have drained."""

BURST_READ_TIMEOUT = 900.0
"""Seconds a no-delay stream's client waits between two pieces of data.
Genkit's server sends every chunk at once and the final frame only after its
write queue has drained, minutes later for a long stream."""


@dataclass
class Side:
    """One implementation under test: two servers and its stream collection."""

    name: str
    label: str
    primary: ServerProcess
    secondary: ServerProcess
    collection: str
    restarts: list[str] = field(default_factory=list)

    @property
    def servers(self) -> tuple[ServerProcess, ServerProcess]:
        return self.primary, self.secondary

    def start(self) -> None:
        for server in self.servers:
            server.start()

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def ensure_running(self, before: str) -> None:
        """Restart any server that died, noting it."""
        for server in self.servers:
            if not server.alive:
                self.restarts.append(
                    f"{server.name} had exited with {server.exit_code}; "
                    f"restarted before {before}"
                )
                server.restart()

    def flow_url(self, server: ServerProcess) -> str:
        return server.url(FLOW_PATH)

    def writes(self, stream_id: str) -> dict[str, int]:
        """Return the Firestore writes the primary server made for a stream."""
        response = httpx.get(
            self.primary.url("__writes"), params={"stream": stream_id}, timeout=10
        )
        response.raise_for_status()
        counts: dict[str, int] = response.json()
        return counts


@dataclass
class PacedRun:
    """A stream sent at a fixed rate, read by its client and a second reader."""

    count: int
    rate: float
    original: Reading
    reader: Reading
    writes: dict[str, int]

    @property
    def writes_per_thousand(self) -> float:
        return self.writes["documents"] / self.count * 1000


def paced_run(side: Side, count: int, rate: float, lead: float) -> PacedRun:
    """Send `count` chunks at `rate` per second, starting after `lead` seconds.

    The original client reads from the primary. A reader on the secondary
    reconnects as soon as the stream id is known, so both are attached before
    the first chunk.
    """
    readers: list[Callable[[], Reading]] = []

    def attach(stream_id: str) -> None:
        url = side.flow_url(side.secondary)
        readers.append(in_thread(lambda: follow_stream(url, stream_id)))

    original = start_stream(
        side.flow_url(side.primary),
        {"count": count, "rate": rate, "lead": lead},
        on_stream_id=attach,
    )
    reader = readers[0]()
    assert original.stream_id is not None
    return PacedRun(count, rate, original, reader, side.writes(original.stream_id))


@dataclass
class BurstRun:
    """A stream sent with no delay between chunks."""

    count: int
    original: Reading
    stored: int
    """Chunks found stored once the run ended."""
    writes: dict[str, int]
    primary_exit: int | None
    """The primary server's exit status if it died during the run."""
    crash: str | None
    """The error the primary server's log ends with if it died."""
    notes: list[str] = field(default_factory=list)

    @property
    def stream_id(self) -> str:
        assert self.original.stream_id is not None
        return self.original.stream_id

    @property
    def finished(self) -> bool:
        return self.original.succeeded and self.stored == self.count

    @property
    def persisted_rate(self) -> float:
        """Chunks stored per second, from the request until the primary's
        response ended: ours sends the end after its last commit, Genkit's
        after its write queue drained or when its process died."""
        return self.stored / self.original.duration


def burst_run(
    side: Side, count: int, count_stored: Callable[[Side, str, int], int]
) -> BurstRun:
    """Send `count` chunks with no delay to the original client alone."""
    original = start_stream(
        side.flow_url(side.primary),
        {"count": count, "rate": 0},
        parse=False,
        read_timeout=BURST_READ_TIMEOUT,
    )
    time.sleep(0.5)
    primary_exit = side.primary.exit_code
    assert original.stream_id is not None
    writes = (
        side.writes(original.stream_id)
        if side.primary.alive
        else {"commits": -1, "documents": -1, "failed": -1}
    )
    stored = count_stored(side, original.stream_id, count)
    crash = None if primary_exit is None else _last_error(side.primary.log_tail())
    return BurstRun(count, original, stored, writes, primary_exit, crash)


def _last_error(log: str) -> str | None:
    """Return the last line of a log that names an error."""
    lines = [line for line in log.splitlines() if "Error" in line]
    return lines[-1].strip()[:300] if lines else None


def replay_times(side: Side, stream_id: str, count: int, repeats: int) -> list[float]:
    """Time full replays of a finished stream on the secondary server."""
    times = []
    for _ in range(repeats):
        reading = follow_stream(side.flow_url(side.secondary), stream_id, parse=False)
        if not reading.succeeded or reading.chunk_count != count:
            raise RuntimeError(
                f"{side.name}: replay of {stream_id} returned "
                f"{reading.chunk_count} of {count} chunks, {reading.outcome()}"
            )
        times.append(reading.duration)
    return times


@dataclass
class MemoryRun:
    """Concurrent streams on the primary, more readers on the secondary."""

    streams: int
    readers: int
    baseline: dict[str, int]
    peaks: dict[str, int]
    completed: int
    """Clients, original or reader, that got every chunk and the result."""
    duration: float
    failures: list[str]
    """The outcome of each client that did not complete."""


def memory_run(
    side: Side,
    streams: int,
    readers_per_stream: int,
    count: int,
    rate: float,
    watch: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext,
) -> MemoryRun:
    """Run `streams` streams at once, each followed by its original client on
    the primary and `readers_per_stream` readers on the secondary, sampling
    both servers' memory. Both servers are started afresh first; `watch`
    wraps the load once they run."""
    for server in side.servers:
        server.restart()
    time.sleep(2)
    baseline = {server.name: server.rss_bytes() for server in side.servers}
    waits: list[Callable[[], Reading]] = []
    started = time.monotonic()

    def attach(stream_id: str) -> None:
        url = side.flow_url(side.secondary)
        for _ in range(readers_per_stream):
            waits.append(
                in_thread(
                    lambda: follow_stream(
                        url, stream_id, parse=False, read_timeout=LOAD_READ_TIMEOUT
                    )
                )
            )

    with MemorySampler(side.servers) as sampler, watch():
        data = {"count": count, "rate": rate, "lead": 3.0}
        url = side.flow_url(side.primary)
        originals = [
            in_thread(
                lambda: start_stream(
                    url,
                    data,
                    parse=False,
                    read_timeout=LOAD_READ_TIMEOUT,
                    on_stream_id=attach,
                )
            )
            for _ in range(streams)
        ]
        readings = [wait() for wait in originals]
        readings += [wait() for wait in list(waits)]
        duration = time.monotonic() - started

    failures = [
        f"{reading.stream_id}: {reading.chunk_count} chunks, {reading.outcome()}"
        for reading in readings
        if not reading.succeeded or reading.chunk_count != count
    ]
    return MemoryRun(
        streams,
        streams * readers_per_stream,
        baseline,
        dict(sampler.peaks),
        len(readings) - len(failures),
        duration,
        failures,
    )


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: list[float], fraction: float) -> float:
    """Return the `fraction` quantile (nearest rank) of `values`."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[rank]


def firestore_size(value: Any) -> int:
    """Return the storage size of a Firestore value by Firestore's documented
    rules: strings take their UTF-8 bytes plus one, numbers and timestamps 8,
    maps the sizes of their keys (plus one) and values."""
    if isinstance(value, str):
        return len(value.encode()) + 1
    if isinstance(value, dict):
        return sum(
            firestore_size(key) + firestore_size(item) for key, item in value.items()
        )
    if isinstance(value, list):
        return sum(firestore_size(item) for item in value)
    if value is None or isinstance(value, bool):
        return 1
    return 8


def genkit_stored(
    db: firestore.Client, collection: str, stream_id: str
) -> tuple[int, int, list[str]]:
    """Return the chunks, the size in bytes and the end markers stored in a
    Genkit stream document."""
    snapshot = db.collection(collection).document(stream_id).get()
    data = snapshot.to_dict() or {}
    events = data.get("stream", [])
    chunks = sum(1 for event in events if event.get("type") == "chunk")
    markers = [event.get("type") for event in events if event.get("type") != "chunk"]
    name = f"{collection}/{stream_id}"
    size = firestore_size(name) + 16 + firestore_size(data)
    return chunks, size, [json.dumps(marker) for marker in markers]
