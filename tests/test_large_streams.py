"""Streams far past one document's size, with a bounded write rate."""

from __future__ import annotations

import collections

import pytest
from google.cloud import firestore

from support.servers import Server
from support.sse import stream

MAX_WRITES_PER_SECOND = 5


def max_writes_in_one_second(times: list[float]) -> int:
    """Return the largest number of writes inside any one-second window."""
    times = sorted(times)
    most = 0
    start = 0
    for end, moment in enumerate(times):
        while moment - times[start] >= 1.0:
            start += 1
        most = max(most, end - start + 1)
    return most


def writes_per_document(server: Server, stream_id: str) -> dict[str, list[float]]:
    per_document: dict[str, list[float]] = collections.defaultdict(list)
    for moment, paths in server.commits(stream_id):
        for path in paths:
            per_document[path].append(moment)
    return per_document


@pytest.mark.parametrize(
    ("count", "size", "min_documents"),
    [
        (10_000, 0, 1),  # many small chunks
        (5_500, 1_000, 10),  # more than 5 MiB in all, in 512 KiB documents
    ],
)
def test_large_stream_is_stored_and_replayed(
    server: Server,
    db: firestore.Client,
    collection: str,
    count: int,
    size: int,
    min_documents: int,
) -> None:
    live = stream(server.url("blast"), {"count": count, "size": size}, timeout=120)
    assert live.stream_id is not None
    replay = stream(server.url("blast"), stream_id=live.stream_id, timeout=120)

    for result in (live, replay):
        assert result.seqs == list(range(count))
        assert [chunk["i"] for chunk in result.chunks] == list(range(count))
        assert result.final == {"result": {"sent": count}}
        result.assert_one_final_frame_last()
    stored_bytes = sum(len(frame["message"]["pad"]) for frame in replay.frames[:-1])
    assert stored_bytes == count * size

    chunk_documents = list(
        db.collection(collection).document(live.stream_id).collection("chunks").stream()
    )
    assert len(chunk_documents) >= min_documents

    per_document = writes_per_document(server, live.stream_id)
    record_path = f"{collection}/{live.stream_id}"
    assert record_path in per_document
    for path, times in per_document.items():
        assert max_writes_in_one_second(times) <= MAX_WRITES_PER_SECOND, path
    assert sum(map(len, per_document.values())) < count / 10


def test_max_writes_in_one_second_counts_windows() -> None:
    assert max_writes_in_one_second([]) == 0
    assert max_writes_in_one_second([0.0, 0.5, 0.99, 1.0, 1.5]) == 3
    assert max_writes_in_one_second([0.0, 2.0, 4.0]) == 1
