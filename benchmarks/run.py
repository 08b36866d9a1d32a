"""Run every measurement against both implementations in one run.

One Firestore emulator, two servers of ours and two of Genkit JS's
(`FirestoreStreamManager` behind `@genkit-ai/express`), each pair with its
own collection. The measurements run one after the other, each first for
ours and then for Genkit's, so the two figures of a row are taken minutes
apart at most on the same machine.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pickle
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore

from . import report
from .client import follow_stream, start_stream
from .phases import (
    BurstRun,
    MemoryRun,
    PacedRun,
    Side,
    burst_run,
    genkit_stored,
    median,
    memory_run,
    paced_run,
    replay_times,
)
from .profiling import recording
from .servers import ROOT, ServerProcess, free_port, genkit_server, ours_server

sys.path.insert(0, str(ROOT / "scripts"))
from firestore_emulator import start_emulator

PROJECT = "demo-benchmark"
SIDES: dict[str, tuple[str, Callable[[str, dict[str, str], Path], ServerProcess]]] = {
    "ours": ("this service", ours_server),
    "genkit": ("Genkit JS", genkit_server),
}


@dataclass(frozen=True)
class Plan:
    """How much work each measurement does."""

    paced_count: int = 5200
    paced_rate: float = 50.0
    start_window: tuple[int, int] = (10, 210)
    late_window: tuple[int, int] = (5000, 5200)
    bursts: tuple[int, ...] = (1000, 10_000, 100_000)
    replay_counts: tuple[int, ...] = (1000, 10_000)
    replay_repeats: int = 5
    memory_streams: int = 50
    memory_readers_per_stream: int = 4
    memory_count: int = 300
    memory_rate: float = 20.0
    tradeoff_intervals: tuple[float, ...] = (0.5, 0.2, 0.1, 0.05)
    tradeoff_count: int = 1000


QUICK = Plan(
    paced_count=700,
    start_window=(10, 110),
    late_window=(500, 700),
    bursts=(1000, 3000),
    replay_counts=(1000, 3000),
    replay_repeats=2,
    memory_streams=5,
    memory_count=60,
    tradeoff_intervals=(0.5, 0.1),
    tradeoff_count=200,
)


@dataclass
class SideResults:
    paced: PacedRun | None = None
    bursts: list[BurstRun] | None = None
    replays: dict[int, list[float]] | None = None
    replay_failures: dict[int, str] | None = None
    memory: MemoryRun | None = None
    tradeoff: list[tuple[float, PacedRun]] | None = None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/benchmark",
        description="Benchmark this service against Genkit JS's "
        "FirestoreStreamManager on one Firestore emulator.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a short smoke run with small counts; writes to a temporary "
        "folder unless --output is given",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="folder for benchmarks.md and the plots (default: docs/)",
    )
    parser.add_argument(
        "--render",
        type=Path,
        metavar="PICKLE",
        help="write the page again from the results.pickle a run left in its "
        "log folder, without measuring",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="FOLDER",
        help="instead of the benchmark, record py-spy profiles of our servers "
        "under the largest no-delay stream and under the memory load into "
        "FOLDER, and print their figures",
    )
    args = parser.parse_args(argv)

    plan = QUICK if args.quick else Plan()
    work = Path(tempfile.mkdtemp(prefix="benchmark-logs-"))
    print(f"Logs of the servers and the emulator: {work}", flush=True)
    if args.profile:
        profile_ours(plan, work, args.profile)
        return 0

    output = args.output or (
        Path(tempfile.mkdtemp(prefix="benchmark-")) if args.quick else ROOT / "docs"
    )
    if args.render:
        saved_run = pickle.loads(args.render.read_bytes())
        plan, results, restarts, elapsed, machine = saved_run
    else:
        started = time.monotonic()
        with running(work, ("ours", "genkit")) as (sides, db):
            results = {side.name: SideResults() for side in sides}
            _measure(plan, sides, results, db)
        elapsed = time.monotonic() - started
        restarts = [note for side in sides for note in side.restarts]
        machine = report.machine_info()
        saved = work / "results.pickle"
        saved.write_bytes(pickle.dumps((plan, results, restarts, elapsed, machine)))
        print(f"Results kept in {saved}", flush=True)

    summary = report.summarize(plan, results, restarts, elapsed, machine)
    print()
    print(report.text_table(summary))
    written = report.write_page(summary, results, output)
    print(f"\nWrote {', '.join(str(path) for path in written)}")
    return 0


@contextlib.contextmanager
def running(
    work: Path, names: tuple[str, ...]
) -> Iterator[tuple[list[Side], firestore.Client]]:
    """Start the emulator and two warmed-up servers of each named side."""
    emulator = start_emulator(
        port=free_port(), project=PROJECT, log_path=work / "emulator.log"
    )
    env = {"FIRESTORE_EMULATOR_HOST": emulator.address, "GCLOUD_PROJECT": PROJECT}
    os.environ.update(env)
    db = firestore.Client(project=PROJECT, credentials=AnonymousCredentials())
    sides = [_side(name, env, work) for name in names]
    try:
        for side in sides:
            side.start()
            _warm_up(side)
        yield sides, db
    finally:
        for side in sides:
            side.stop()
        db.close()
        emulator.stop()


def profile_ours(plan: Plan, work: Path, folder: Path) -> None:
    """Profile our servers under a no-delay stream and the memory load, and
    print the figures a change to the hot paths should move."""
    folder.mkdir(parents=True, exist_ok=True)
    with running(work, ("ours",)) as (sides, db):
        side = sides[0]
        count = plan.bursts[-1]
        _log(f"ours: profiling a stream of {count} chunks with no delay")
        with _profiled(side, folder, "burst"), _cpu_used(side) as cpu:
            run = burst_run(side, count, _stored_counter(db))
        print(
            f"stored {run.stored:,} of {count:,} chunks in "
            f"{run.original.duration:.2f} s: {run.persisted_rate:,.0f} chunks/s; "
            f"CPU seconds {_cpu_text(cpu)}"
        )
        replays = replay_times(side, run.stream_id, count, plan.replay_repeats)
        print(f"replay of {count:,} chunks on B: median {median(replays):.3f} s")

        _log("ours: profiling the memory load")
        with _cpu_used(side) as cpu:
            memory = _memory_run(plan, side, lambda: _profiled(side, folder, "memory"))
        print(
            f"memory load: {memory.completed} of {memory.streams + memory.readers} "
            f"clients complete in {memory.duration:.1f} s; peak RSS "
            + ", ".join(
                f"{name} {peak / 2**20:,.0f} MiB" for name, peak in memory.peaks.items()
            )
            + f"; CPU seconds {_cpu_text(cpu)}"
        )
        for failure in memory.failures:
            print(f"incomplete client: {failure}")
    print(f"Profiles and their summaries (*.txt): {folder}")


@contextlib.contextmanager
def _cpu_used(side: Side) -> Iterator[dict[str, float]]:
    """Yield a dict that holds, after the block, each server's CPU seconds in it.

    Servers restarted inside the block count from their restart.
    """
    used: dict[str, float] = {}
    before = {
        server.name: (server.pid, server.cpu_seconds()) for server in side.servers
    }
    yield used
    for server in side.servers:
        pid, start = before[server.name]
        used[server.name] = server.cpu_seconds() - (start if server.pid == pid else 0)


def _cpu_text(used: dict[str, float]) -> str:
    return ", ".join(f"{name} {seconds:.1f}" for name, seconds in used.items())


def _side(name: str, env: dict[str, str], work: Path) -> Side:
    label, factory = SIDES[name]
    collection = f"{name}-streams"
    side_env = {**env, "FIRESTORE_STREAMS_COLLECTION": collection}
    primary = factory(f"{name}-primary", side_env, work / f"{name}-primary.log")
    secondary = factory(f"{name}-secondary", side_env, work / f"{name}-secondary.log")
    return Side(name, label, primary, secondary, collection)


def _warm_up(side: Side) -> None:
    """Run one short stream on each server, so no figure pays for a cold
    Firestore connection or a cold emulator."""
    reading = start_stream(side.flow_url(side.primary), {"count": 20, "rate": 0})
    assert reading.stream_id is not None, reading.outcome()
    follow_stream(side.flow_url(side.secondary), reading.stream_id)


def _measure(
    plan: Plan,
    sides: list[Side],
    results: dict[str, SideResults],
    db: firestore.Client,
) -> None:
    for side in sides:
        _log(f"{side.name}: {plan.paced_count} chunks at {plan.paced_rate:g}/s")
        side.ensure_running("the paced stream")
        results[side.name].paced = paced_run(
            side, plan.paced_count, plan.paced_rate, lead=1.0
        )

    for side in sides:
        _bursts(plan, side, db, results[side.name])

    for side in sides:
        _log(
            f"{side.name}: memory with {plan.memory_streams} streams and "
            f"{plan.memory_streams * plan.memory_readers_per_stream} readers"
        )
        results[side.name].memory = _memory_run(plan, side)

    results["ours"].tradeoff = _tradeoff(plan, sides[0])


def _bursts(plan: Plan, side: Side, db: firestore.Client, results: SideResults) -> None:
    """Send ever longer streams with no delay until one fails.

    Each finished stream of a length in `plan.replay_counts` is replayed at
    once, well within its time to live.
    """
    results.bursts = []
    results.replays = {}
    results.replay_failures = {}
    for count in plan.bursts:
        _log(f"{side.name}: {count} chunks with no delay")
        side.ensure_running(f"the stream of {count} chunks")
        run = burst_run(side, count, _stored_counter(db))
        if side.name == "genkit" and not run.finished:
            _, size, markers = genkit_stored(db, side.collection, run.stream_id)
            run.notes.append(
                f"stored document: {size:,} bytes by Firestore's size rules, "
                f"end markers {markers or 'none'}"
            )
        results.bursts.append(run)
        _log(
            f"{side.name}: stored {run.stored} of {count} in "
            f"{run.original.duration:.2f} s, {run.original.outcome()}"
        )
        if count in plan.replay_counts and run.finished:
            _log(f"{side.name}: replaying {count} chunks x{plan.replay_repeats}")
            results.replays[count] = replay_times(
                side, run.stream_id, count, plan.replay_repeats
            )
        if not run.finished:
            break

    for count in plan.replay_counts:
        if count not in results.replays:
            results.replay_failures[count] = (
                "a stream of this length failed"
                if any(run.count == count for run in results.bursts)
                else "not tried: a shorter stream failed"
            )


def _stored_counter(db: firestore.Client) -> Callable[[Side, str, int], int]:
    """Return a function that counts the chunks a side stored for a stream:
    Genkit's by reading its document, ours by a full replay on B."""

    def count_stored(side: Side, stream_id: str, count: int) -> int:
        if side.name == "genkit":
            chunks, _, _ = genkit_stored(db, side.collection, stream_id)
            return chunks
        replay = follow_stream(side.flow_url(side.secondary), stream_id, parse=False)
        return replay.chunk_count

    return count_stored


def _memory_run(
    plan: Plan,
    side: Side,
    watch: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext,
) -> MemoryRun:
    return memory_run(
        side,
        plan.memory_streams,
        plan.memory_readers_per_stream,
        plan.memory_count,
        plan.memory_rate,
        watch,
    )


def _tradeoff(plan: Plan, side: Side) -> list[tuple[float, PacedRun]]:
    """Measure writes and latency of our servers for several write intervals."""
    runs = []
    for interval in plan.tradeoff_intervals:
        _log(f"{side.name}: write_interval {interval:g} s")
        for server in side.servers:
            server.env["STREAM_WRITE_INTERVAL_SECONDS"] = str(interval)
            server.restart()
        _warm_up(side)
        run = paced_run(side, plan.tradeoff_count, plan.paced_rate, lead=1.0)
        runs.append((interval, run))
    return runs


@contextlib.contextmanager
def _profiled(side: Side, folder: Path, name: str) -> Iterator[None]:
    """Record py-spy profiles of a side's two servers."""
    with (
        recording(side.primary, folder / f"{name}-primary.raw"),
        recording(side.secondary, folder / f"{name}-secondary.raw"),
    ):
        yield


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)
