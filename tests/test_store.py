"""Firestore reads and writes of streams, on the real emulator."""

from __future__ import annotations

import datetime
import threading
import time

import pytest
from google.cloud import firestore

from durable_streams.layout import Segment, pack_segments
from durable_streams.record import Lease, StreamState, new_record, segment_id
from durable_streams.store import StreamStore, WriteConflict, utc_now

STREAM_ID = "AAAAAAAAAAAAAAAAAAAAAA"


def make_record() -> dict[str, object]:
    now = utc_now()
    lease = Lease("test", 1, now + datetime.timedelta(seconds=15))
    return new_record(
        flow="countdown",
        input_json="5",
        owner=None,
        lease=lease,
        now=now,
        ttl_seconds=300,
    )


@pytest.fixture
def store(db: firestore.Client, collection: str) -> StreamStore:
    return StreamStore(db, collection)


def test_create_then_read_state(store: StreamStore) -> None:
    update_time = store.create(STREAM_ID, make_record())
    state = store.read_state(STREAM_ID)

    assert state is not None
    assert state.update_time == update_time
    assert state.flow == "countdown"
    assert state.count == 0
    assert state.lease.token == 1


def test_read_state_of_unknown_stream_is_none(store: StreamStore) -> None:
    assert store.read_state(STREAM_ID) is None


def test_malformed_record_reads_as_none(store: StreamStore) -> None:
    store.record_ref(STREAM_ID).set({"status": "running"})

    assert store.read_state(STREAM_ID) is None


def test_commit_with_stale_version_writes_nothing(store: StreamStore) -> None:
    created = store.create(STREAM_ID, make_record())
    store.commit(
        STREAM_ID, {"count": 1}, (), expected=created, segment_expires_at=utc_now()
    )

    with pytest.raises(WriteConflict):
        store.commit(
            STREAM_ID,
            {"count": 99},
            (Segment(0, ('"lost"',)),),
            expected=created,
            segment_expires_at=utc_now(),
        )

    state = store.read_state(STREAM_ID)
    assert state is not None
    assert state.count == 1
    assert list(store.chunks_ref(STREAM_ID).stream()) == []


def test_read_chunks_pages_through_segments(store: StreamStore) -> None:
    created = store.create(STREAM_ID, make_record())
    chunks = [f'"{index}"' for index in range(300)]
    segments = pack_segments(0, chunks, segment_bytes=60)
    assert len(segments) > 20  # more than two query pages
    store.commit(
        STREAM_ID,
        {"count": 300, "tailStart": 300},
        segments,
        expected=created,
        segment_expires_at=utc_now(),
    )

    everything = [text for run in store.read_chunks(STREAM_ID, 0, 300) for text in run]
    middle = [text for run in store.read_chunks(STREAM_ID, 123, 177) for text in run]

    assert everything == chunks
    assert middle == chunks[123:177]


def test_read_chunks_missing_range_raises(store: StreamStore) -> None:
    store.create(STREAM_ID, make_record())

    with pytest.raises(WriteConflict):
        list(store.read_chunks(STREAM_ID, 0, 5))


def test_listener_delivers_new_states(store: StreamStore) -> None:
    created = store.create(STREAM_ID, make_record())
    seen: list[StreamState | None] = []
    changed = threading.Event()

    def on_state(state: StreamState | None) -> None:
        seen.append(state)
        if state is not None and state.count == 2:
            changed.set()

    watch = store.listen(STREAM_ID, on_state)
    try:
        deadline = time.monotonic() + 10
        while not seen and time.monotonic() < deadline:
            time.sleep(0.01)
        store.commit(
            STREAM_ID, {"count": 2}, (), expected=created, segment_expires_at=utc_now()
        )
        assert changed.wait(10)
    finally:
        watch.unsubscribe()

    assert seen[0] is not None
    assert seen[-1] is not None
    assert seen[-1].count == 2


def test_chunk_runs_are_stored_as_one_string(store: StreamStore) -> None:
    created = store.create(STREAM_ID, make_record())
    texts = ['{"n":1}', '"line\\nbreak"', "[]"]
    store.commit(
        STREAM_ID,
        {"count": 6, "tailStart": 3, "tail": texts},
        (Segment(0, tuple(texts)),),
        expected=created,
        segment_expires_at=utc_now(),
    )

    stored = store.record_ref(STREAM_ID).get().to_dict() or {}
    segment = store.chunks_ref(STREAM_ID).document(segment_id(2)).get().to_dict()
    state = store.read_state(STREAM_ID)

    assert stored["tail"] == "\n".join(texts)
    assert segment is not None
    assert segment["chunks"] == "\n".join(texts)
    assert state is not None
    assert state.tail == tuple(texts)
    assert list(store.read_chunks(STREAM_ID, 0, 3)) == [texts]


def test_chunk_runs_stored_as_arrays_are_read(store: StreamStore) -> None:
    record = {**make_record(), "count": 4, "tailStart": 2, "tail": ['"c"', '"d"']}
    store.record_ref(STREAM_ID).set(record)
    store.chunks_ref(STREAM_ID).document(segment_id(1)).set(
        {"first": 0, "chunks": ['"a"', '"b"']}
    )

    state = store.read_state(STREAM_ID)
    found = store.get(STREAM_ID)

    assert state is not None
    assert state.tail == ('"c"', '"d"')
    assert found is not None
    assert found[0]["tail"] == ['"c"', '"d"']
    assert list(store.read_chunks(STREAM_ID, 0, 2)) == [['"a"', '"b"']]
