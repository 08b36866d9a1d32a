"""Firestore reads and writes of stream records and chunk documents."""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from google.api_core import exceptions as api_exceptions
from google.auth import exceptions as auth_exceptions
from google.cloud import firestore
from google.cloud.firestore_v1.field_path import FieldPath
from google.cloud.firestore_v1.watch import Watch

from . import record as fields
from .errors import DurableStreamError, InvalidArgument
from .layout import Segment
from .record import RecordError, StreamState
from .wire import is_valid_stream_id

logger = logging.getLogger(__name__)

LEASE_END = f"{fields.LEASE}.expiresAt"
"""Field path of the end of a record's lease."""
RPC_TIMEOUT = float(os.environ.get("FIRESTORE_RPC_TIMEOUT_SECONDS") or 10.0)
"""Seconds one Firestore call may take before it counts as failed."""

CHUNK_PAGE_SIZE = 2
"""Chunk documents read per query page; each holds at most `segment_bytes`.

A reader holds one page until it has sent it, so a reader that stops reading
mid-replay keeps at most this many chunk documents in memory."""

_TRANSIENT_ERRORS = (
    api_exceptions.ServiceUnavailable,
    api_exceptions.DeadlineExceeded,
    api_exceptions.InternalServerError,
    api_exceptions.TooManyRequests,
    api_exceptions.ResourceExhausted,
    api_exceptions.Aborted,
    api_exceptions.Unknown,
    api_exceptions.GatewayTimeout,
    api_exceptions.RetryError,
    auth_exceptions.TransportError,
    ConnectionError,
    TimeoutError,
)

RecordListener = Callable[[StreamState | None], None]
CommitObserver = Callable[[str, Sequence[str]], None]


class WriteConflict(DurableStreamError):
    """The record changed or vanished since the version a write expected."""


def is_transient(error: BaseException) -> bool:
    """Tell whether a Firestore error may go away when the call is retried."""
    return isinstance(error, _TRANSIENT_ERRORS)


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class StreamStore:
    """Stream records of one collection and their chunk documents."""

    def __init__(
        self,
        client: firestore.Client,
        collection: str,
        *,
        observers: Sequence[CommitObserver] = (),
    ) -> None:
        self.client = client
        self.collection = collection
        self._records = client.collection(collection)
        self._observers = observers

    def record_ref(self, stream_id: str) -> firestore.DocumentReference:
        """Return the record's reference; every document path of a stream
        starts here, so a malformed id never reaches Firestore."""
        if not is_valid_stream_id(stream_id):
            raise InvalidArgument(f"Malformed stream id: {stream_id!r}.")
        return self._records.document(stream_id)

    def chunks_ref(self, stream_id: str) -> firestore.CollectionReference:
        chunks: firestore.CollectionReference = self.record_ref(stream_id).collection(
            fields.CHUNKS
        )
        return chunks

    def create(self, stream_id: str, record: Mapping[str, Any]) -> datetime.datetime:
        """Create a stream record and return its update time."""
        ref = self.record_ref(stream_id)
        result = ref.create(_to_stored(record), retry=None, timeout=RPC_TIMEOUT)
        self._observe(stream_id, [ref.path])
        update_time: datetime.datetime = result.update_time
        return update_time

    def get(self, stream_id: str) -> tuple[dict[str, Any], datetime.datetime] | None:
        """Read a record and its update time; return None if it does not exist."""
        snapshot = self.record_ref(stream_id).get(retry=None, timeout=RPC_TIMEOUT)
        if not snapshot.exists:
            return None
        return _from_stored(snapshot.to_dict() or {}), snapshot.update_time

    def running_with_lease_before(
        self, cutoff: datetime.datetime, limit: int
    ) -> list[tuple[str, dict[str, Any], datetime.datetime]]:
        """Return up to `limit` running records whose lease ended before
        `cutoff`, the oldest lease first, each with its id and update time.

        The query needs the composite index on `status` and `lease.expiresAt`
        that firestore.indexes.json declares.
        """
        query = (
            self._records.where(
                filter=firestore.FieldFilter(
                    fields.STATUS, "==", fields.Status.RUNNING.value
                )
            )
            .where(filter=firestore.FieldFilter(LEASE_END, "<", cutoff))
            .order_by(LEASE_END)
            .limit(limit)
        )
        return [
            (snapshot.id, _from_stored(snapshot.to_dict() or {}), snapshot.update_time)
            for snapshot in query.stream(retry=None, timeout=RPC_TIMEOUT)
        ]

    def read_state(self, stream_id: str) -> StreamState | None:
        """Read a record as a `StreamState`; a malformed record counts as absent."""
        found = self.get(stream_id)
        if found is None:
            return None
        return _parse(stream_id, *found)

    def commit(
        self,
        stream_id: str,
        record_fields: Mapping[str, Any],
        segments: Sequence[Segment],
        *,
        expected: datetime.datetime,
        segment_expires_at: datetime.datetime,
    ) -> datetime.datetime:
        """Write new chunk documents and update the record in one atomic batch.

        The batch applies only if the record's update time is still
        `expected`; otherwise it raises `WriteConflict` and writes nothing.
        Returns the record's new update time.
        """
        batch = self.client.batch()
        paths = []

        for segment in segments:
            ref = self.chunks_ref(stream_id).document(fields.segment_id(segment.last))
            batch.set(
                ref,
                {
                    fields.FIRST: segment.first,
                    fields.CHUNK_TEXTS: fields.join_chunks(segment.chunks),
                    fields.EXPIRES_AT: segment_expires_at,
                },
            )
            paths.append(ref.path)

        record_ref = self.record_ref(stream_id)
        batch.update(
            record_ref,
            _to_stored(record_fields),
            option=self.client.write_option(last_update_time=expected),
        )
        paths.append(record_ref.path)

        try:
            results = batch.commit(retry=None, timeout=RPC_TIMEOUT)
        except (api_exceptions.FailedPrecondition, api_exceptions.NotFound) as error:
            raise WriteConflict(
                f"stream {stream_id!r} changed: {error.message}"
            ) from None

        self._observe(stream_id, paths)
        update_time: datetime.datetime = results[-1].update_time
        return update_time

    def update_if_unchanged(
        self,
        stream_id: str,
        record_fields: Mapping[str, Any],
        *,
        expected: datetime.datetime,
    ) -> datetime.datetime:
        """Update a record only if its update time is still `expected`."""
        return self.commit(
            stream_id,
            record_fields,
            (),
            expected=expected,
            segment_expires_at=utc_now(),
        )

    def read_chunks(self, stream_id: str, start: int, stop: int) -> Iterator[list[str]]:
        """Yield, page by page, the stored chunks at positions `start` to `stop - 1`.

        Only chunks that have moved to chunk documents can be read this way.
        Raises `WriteConflict` if a chunk in the range is missing, which
        happens when the stream was deleted meanwhile.
        """
        position = start
        chunks = self.chunks_ref(stream_id)
        query = (
            chunks.where(
                filter=firestore.FieldFilter(
                    FieldPath.document_id(),
                    ">=",
                    chunks.document(fields.segment_id(start)),
                )
            )
            .order_by(FieldPath.document_id())
            .limit(CHUNK_PAGE_SIZE)
        )

        while position < stop:
            page = list(query.stream(retry=None, timeout=RPC_TIMEOUT))
            if not page:
                break
            for snapshot in page:
                data = snapshot.to_dict() or {}
                first = int(data[fields.FIRST])
                texts = fields.split_chunks(data[fields.CHUNK_TEXTS])
                if first > position:
                    raise _missing_chunk(stream_id, position)
                run = texts[position - first : stop - first]
                if run:
                    yield run
                    position += len(run)
                if position >= stop:
                    return
            query = query.start_after(page[-1])

        if position < stop:
            raise _missing_chunk(stream_id, position)

    def listen(self, stream_id: str, listener: RecordListener) -> Watch:
        """Call `listener` with every new state of a record until unsubscribed."""

        def on_snapshot(snapshots: list[Any], changes: Any, read_time: Any) -> None:
            snapshot = snapshots[0] if snapshots else None
            if snapshot is None or not snapshot.exists:
                listener(None)
                return
            data = _from_stored(snapshot.to_dict() or {})
            listener(_parse(stream_id, data, snapshot.update_time))

        watch: Watch = self.record_ref(stream_id).on_snapshot(on_snapshot)
        return watch

    def _observe(self, stream_id: str, paths: Sequence[str]) -> None:
        for observer in self._observers:
            observer(stream_id, paths)


def _to_stored(record_fields: Mapping[str, Any]) -> dict[str, Any]:
    """Return record fields as stored: the tail as one string."""
    stored = dict(record_fields)
    if fields.TAIL in stored:
        stored[fields.TAIL] = fields.join_chunks(stored[fields.TAIL])
    return stored


def _from_stored(data: dict[str, Any]) -> dict[str, Any]:
    """Return a stored record with its tail as a list of chunk texts."""
    if fields.TAIL in data:
        data[fields.TAIL] = fields.split_chunks(data[fields.TAIL])
    return data


def _missing_chunk(stream_id: str, position: int) -> WriteConflict:
    return WriteConflict(
        f"stream {stream_id!r} has no stored chunk at position {position}"
    )


def _parse(
    stream_id: str, data: Mapping[str, Any], update_time: datetime.datetime
) -> StreamState | None:
    try:
        return StreamState.from_record(stream_id, data, update_time)
    except RecordError:
        logger.exception(
            "Ignoring malformed stream record", extra={"stream_id": stream_id}
        )
        return None
