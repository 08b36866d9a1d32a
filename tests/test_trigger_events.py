"""The finalize trigger's handler on real CloudEvents from the Firestore emulator.

The emulator delivers each write event to a loopback capture server, base64
encoded. Tests feed the handler that event as delivered, and decoded to the
raw protobuf body that Cloud Functions delivers in production.
"""

from __future__ import annotations

import base64
import datetime
import logging
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cloudevents.http import CloudEvent
from google.cloud import firestore
from google.cloud.firestore_v1 import GeoPoint

from durable_streams import record as fields
from durable_streams.events import (
    EventError,
    decode_event_data,
    decode_written_event,
)
from durable_streams.record import Lease, Status, ended_expiry, new_record
from durable_streams.store import StreamStore
from durable_streams.trigger import StreamFinalizer
from firestore_emulator import Emulator
from support.triggers import (
    CaptureServer,
    Delivery,
    register_trigger,
    start_hooked_emulator,
)

TTL = 120.0
RETENTION = datetime.timedelta(hours=24)


@pytest.fixture(scope="module")
def capture() -> Iterator[CaptureServer]:
    with CaptureServer() as server:
        yield server


@pytest.fixture(scope="module")
def hooked_emulator(
    capture: CaptureServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Emulator]:
    log_path = tmp_path_factory.mktemp("hooked") / "firestore.log"
    emulator = start_hooked_emulator(capture.port, "demo-trigger-events", log_path)
    yield emulator
    emulator.stop()


@pytest.fixture
def streams(
    hooked_emulator: Emulator, capture: CaptureServer, collection: str
) -> Iterator[str]:
    """A collection whose record writes reach the capture server."""
    register_trigger(hooked_emulator, collection, f"{collection}/{{streamId}}")
    yield collection
    list(capture.drain())


@pytest.fixture
def finalizer(hooked_db: firestore.Client, streams: str) -> StreamFinalizer:
    return StreamFinalizer(StreamStore(hooked_db, streams))


def _running_record(now: datetime.datetime) -> dict[str, Any]:
    lease = Lease("test-producer", 1, now + datetime.timedelta(seconds=15))
    return new_record(
        flow="countdown",
        input_json="5",
        owner=None,
        lease=lease,
        now=now,
        ttl_seconds=TTL,
    )


class StoredStream:
    """A stream written the way the producer writes one, with chunk documents
    whose `expiresAt` is still the creation-time retention.

    Each write returns the event the emulator delivered for it.
    """

    def __init__(
        self,
        db: firestore.Client,
        capture: CaptureServer,
        collection: str,
        chunk_documents: int,
    ) -> None:
        self.capture = capture
        self.id = secrets.token_urlsafe(16)
        self.path = f"{collection}/{self.id}"
        self.record = db.document(self.path)
        self.chunks = self.record.collection(fields.CHUNKS)
        self.now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)

        self.record.create(_running_record(self.now))
        for index in range(chunk_documents):
            self.chunks.document(fields.segment_id(2 * index + 1)).create(
                {
                    fields.FIRST: 2 * index,
                    fields.CHUNK_TEXTS: [f'"c{2 * index}"', f'"c{2 * index + 1}"'],
                    fields.EXPIRES_AT: self.now + RETENTION,
                }
            )
        self.chunk_count = 2 * chunk_documents
        self.created = self.delivery()

    def delivery(self) -> Delivery:
        """Return the next event about the record."""
        return self.capture.next_for(self.path)

    def end(self, status: Status = Status.DONE, **changes: Any) -> Delivery:
        """End the stream, leaving the record's `expiresAt` at its running value."""
        self.record.update(
            {
                fields.STATUS: status.value,
                fields.RESULT: '"Liftoff!"',
                fields.ENDED_AT: self.now,
                fields.COUNT: self.chunk_count,
                fields.TAIL_START: self.chunk_count,
                **changes,
            }
        )
        return self.delivery()

    @property
    def final_expiry(self) -> datetime.datetime:
        return ended_expiry(self.now, TTL)

    def record_expiry(self) -> Any:
        return self.record.get().get(fields.EXPIRES_AT)

    def chunk_expiries(self) -> list[Any]:
        return [
            snapshot.get(fields.EXPIRES_AT)
            for snapshot in self.chunks.order_by("__name__").stream()
        ]


NewStream = Callable[..., StoredStream]


@pytest.fixture
def new_stream(
    hooked_db: firestore.Client, capture: CaptureServer, streams: str
) -> NewStream:
    def create(chunk_documents: int = 2) -> StoredStream:
        return StoredStream(hooked_db, capture, streams, chunk_documents)

    return create


def _raw(delivery: Delivery) -> CloudEvent:
    """The event as Cloud Functions delivers it: the same, with a raw body."""
    event = delivery.cloud_event()
    return CloudEvent(dict(event.get_attributes()), base64.b64decode(delivery.body))


def test_emulator_event_decodes_every_field_type(
    hooked_db: firestore.Client, capture: CaptureServer, streams: str
) -> None:
    when = datetime.datetime(2025, 5, 6, 7, 8, 9, 123456, tzinfo=datetime.UTC)
    values = {
        "text": "héllo",
        "integer": 2**40,
        "double": 0.25,
        "flag": True,
        "nothing": None,
        "blob": b"\x00\x01",
        "when": when,
        "list": [1, "two", {"three": 3}],
        "map": {"nested": {"deep": [when]}},
        "point": GeoPoint(1.5, -2.5),
        "ref": hooked_db.document("other/doc"),
    }
    hooked_db.document(f"{streams}/typed").set(values)

    change = decode_written_event(capture.next_for(f"{streams}/typed").cloud_event())

    assert change.before is None
    assert change.after is not None
    assert change.after.path == f"{streams}/typed"
    decoded = change.after.fields
    for name in ("text", "integer", "double", "flag", "nothing", "blob", "when"):
        assert decoded[name] == values[name], name
    assert decoded["list"] == [1, "two", {"three": 3}]
    assert decoded["map"] == {"nested": {"deep": [when]}}
    assert decoded["point"] == (1.5, -2.5)
    assert decoded["ref"].endswith("/documents/other/doc")
    assert change.after.update_time is not None


def test_raw_and_base64_bodies_decode_alike(new_stream: NewStream) -> None:
    delivery = new_stream(chunk_documents=0).created

    from_base64 = decode_event_data(delivery.body, "application/protobuf")
    from_raw = decode_event_data(base64.b64decode(delivery.body))

    assert delivery.body[:1] not in (b"\x0a", b"\x12", b"\x1a")
    assert from_base64 == from_raw
    assert from_raw.value.fields[fields.STATUS].string_value == "running"


def test_json_event_data_decodes_like_protobuf(new_stream: NewStream) -> None:
    data = decode_event_data(new_stream(chunk_documents=0).created.body)
    as_json = type(data).to_dict(data)

    assert decode_event_data(as_json, "application/json") == data


@pytest.mark.parametrize("delivered", ["base64", "raw"])
def test_handler_sets_final_expiry_everywhere(
    new_stream: NewStream, finalizer: StreamFinalizer, delivered: str
) -> None:
    stream = new_stream()
    delivery = stream.end()
    event = delivery.cloud_event() if delivered == "base64" else _raw(delivery)

    finalized = finalizer.handle(event)

    assert finalized is not None
    assert finalized.stream_id == stream.id
    assert finalized.expires_at == stream.final_expiry
    assert finalized.record_updated
    assert finalized.chunk_documents_updated == 2
    assert stream.record_expiry() == stream.final_expiry
    assert stream.chunk_expiries() == [stream.final_expiry] * 2


@pytest.mark.parametrize("status", [Status.FAILED, Status.CANCELLED])
def test_handler_finalizes_failed_and_cancelled(
    new_stream: NewStream, finalizer: StreamFinalizer, status: Status
) -> None:
    stream = new_stream(chunk_documents=1)
    ended = stream.end(status, **{fields.ERROR: {"status": "X", "message": "y"}})

    finalized = finalizer.handle(ended.cloud_event())

    assert finalized is not None
    assert stream.record_expiry() == stream.final_expiry
    assert stream.chunk_expiries() == [stream.final_expiry]


def test_handler_repeated_event_writes_nothing(
    new_stream: NewStream, finalizer: StreamFinalizer
) -> None:
    stream = new_stream()
    event = stream.end().cloud_event()
    finalizer.handle(event)
    update_time = stream.record.get().update_time

    again = finalizer.handle(event)
    own_write = finalizer.handle(stream.delivery().cloud_event())

    assert again is not None
    assert not again.record_updated
    assert again.chunk_documents_updated == 0
    assert own_write is not None
    assert not own_write.record_updated
    assert own_write.chunk_documents_updated == 0
    assert stream.record.get().update_time == update_time


def test_handler_late_event_leaves_newer_record(
    new_stream: NewStream, finalizer: StreamFinalizer
) -> None:
    stream = new_stream()
    ended = stream.end().cloud_event()
    stream.record.update({fields.CANCEL_REQUESTED: True})
    newer = stream.delivery().cloud_event()

    first = finalizer.handle(newer)
    update_time = stream.record.get().update_time
    late = finalizer.handle(ended)

    assert first is not None
    assert first.record_updated
    assert late is not None
    assert not late.record_updated
    assert stream.record.get().update_time == update_time
    assert stream.record_expiry() == stream.final_expiry
    assert stream.chunk_expiries() == [stream.final_expiry] * 2


def test_handler_ignores_delete(
    new_stream: NewStream, finalizer: StreamFinalizer
) -> None:
    stream = new_stream()
    stream.end()
    stream.record.delete()
    deleted = stream.delivery().cloud_event()

    assert decode_written_event(deleted).after is None
    assert finalizer.handle(deleted) is None
    assert stream.chunk_expiries() == [stream.now + RETENTION] * 2


def test_handler_ignores_running_stream(
    new_stream: NewStream, finalizer: StreamFinalizer
) -> None:
    stream = new_stream()
    expiry = stream.record_expiry()

    assert finalizer.handle(stream.created.cloud_event()) is None
    assert stream.record_expiry() == expiry
    assert stream.chunk_expiries() == [stream.now + RETENTION] * 2


def test_handler_logs_malformed_ended_record(
    new_stream: NewStream,
    finalizer: StreamFinalizer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    stream = new_stream()
    ended = stream.end(**{fields.ENDED_AT: "yesterday"})

    with caplog.at_level(logging.ERROR, logger="durable_streams.trigger"):
        result = finalizer.handle(ended.cloud_event())

    assert result is None
    assert "endedAt is not a timestamp" in caplog.text
    assert [record.stream_id for record in caplog.records] == [stream.id]  # type: ignore[attr-defined]
    assert stream.chunk_expiries() == [stream.now + RETENTION] * 2


def test_handler_ignores_other_collections(
    new_stream: NewStream, hooked_db: firestore.Client
) -> None:
    stream = new_stream()
    event = stream.end().cloud_event()

    other = StreamFinalizer(StreamStore(hooked_db, "some-other-collection"))

    assert other.handle(event) is None
    assert stream.chunk_expiries() == [stream.now + RETENTION] * 2


def test_handler_ignores_events_of_other_types(
    new_stream: NewStream, finalizer: StreamFinalizer
) -> None:
    stream = new_stream()
    delivery = stream.end()
    attributes = dict(delivery.cloud_event().get_attributes())
    attributes["type"] = "google.cloud.firestore.document.v1.deleted"

    assert finalizer.handle(CloudEvent(attributes, delivery.body)) is None
    assert stream.chunk_expiries() == [stream.now + RETENTION] * 2


def test_undecodable_event_data_raises_event_error() -> None:
    with pytest.raises(EventError, match="not a DocumentEventData"):
        decode_event_data(b"\x0a\xff\xff\xff")
