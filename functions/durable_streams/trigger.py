"""The Firestore trigger that makes an ended stream's documents expire together.

It runs on every write of a stream record (``<collection>/{streamId}``).
When the record shows an ended stream, it sets `expiresAt` of the record and
of every chunk document to the end time plus the stream's TTL (see
`expiry`), so Firestore's TTL policy deletes the whole stream at once.

- Deletes (TTL deletes included) and running streams are ignored.
- A document is written only when its `expiresAt` differs. The record write
  is conditional on the update time the event shows, so a late event never
  acts on a record that has changed since. That write fires the trigger
  again, and the second event finds nothing left to change.
- firebase-functions 0.6.0 deploys Firestore triggers without retries, so
  transient Firestore errors are retried here for up to `RETRY_DEADLINE`.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from cloudevents.abstract import CloudEvent
from google.api_core import exceptions as api_exceptions
from google.api_core.retry import exponential_sleep_generator
from google.cloud.firestore_v1.field_path import FieldPath

from . import record as fields
from .events import EventError, decode_written_event
from .expiry import Finalization, plan_finalization
from .record import RecordError
from .runtime import get_runtime
from .store import RPC_TIMEOUT, StreamStore, is_transient

logger = logging.getLogger(__name__)

RETRY_DEADLINE = 60.0
"""Seconds a failing Firestore call is retried before the event fails."""

CHUNK_PAGE_SIZE = 200
"""Chunk documents read, and at most written, per batch (Firestore allows 500
writes per batch)."""

STREAM_ID_PARAMETER = "streamId"
ENDPOINT_ATTRIBUTE = "__firebase_endpoint__"
"""Attribute by which firebase-functions marks the functions to deploy."""

EventFunction = Callable[[CloudEvent], None]
Result = TypeVar("Result")


@dataclass(frozen=True)
class Finalized:
    """The outcome of the trigger for one ended stream."""

    stream_id: str
    expires_at: datetime.datetime
    record_updated: bool
    chunk_documents_updated: int


class StreamFinalizer:
    """Sets the final `expiresAt` on the documents of the streams of one
    collection."""

    def __init__(self, store: StreamStore) -> None:
        self._store = store

    def handle(self, event: CloudEvent) -> Finalized | None:
        """Handle one write event of a stream record.

        Returns what was done, or None when the event needs nothing: a
        delete, a running stream, or a record that cannot be used. Raises
        the Firestore error when the writes keep failing for
        `RETRY_DEADLINE` seconds.
        """
        try:
            change = decode_written_event(event)
        except EventError as error:
            logger.error("Ignoring invalid event %s: %s", event.get("id"), error)
            return None

        stream_id = self._stream_id(change.path)
        if stream_id is None or change.after is None:
            return None

        log = {"stream_id": stream_id}
        try:
            plan = plan_finalization(change.after.fields)
        except RecordError as error:
            logger.error(
                "Setting the stream's final expiry failed: %s", error, extra=log
            )
            return None
        if plan is None:
            return None

        update_time = change.after.update_time
        finalized = self._retrying(
            stream_id, lambda: self.finalize(stream_id, plan, update_time)
        )
        changed = finalized.record_updated or finalized.chunk_documents_updated
        logger.log(
            logging.INFO if changed else logging.DEBUG,
            "Stream documents expire at %s: record %s, %d chunk documents updated",
            finalized.expires_at.isoformat(),
            "updated" if finalized.record_updated else "unchanged",
            finalized.chunk_documents_updated,
            extra=log,
        )
        return finalized

    def finalize(
        self,
        stream_id: str,
        plan: Finalization,
        update_time: datetime.datetime | None,
    ) -> Finalized:
        """Write `plan.expires_at` wherever it is missing; safe to repeat."""
        record_updated = plan.record_stale and self._update_record(
            stream_id, plan.expires_at, update_time
        )
        chunks_updated = 0
        if plan.has_chunk_documents:
            chunks_updated = self._update_chunks(stream_id, plan.expires_at)
        return Finalized(stream_id, plan.expires_at, record_updated, chunks_updated)

    def _stream_id(self, path: str | None) -> str | None:
        collection, _, stream_id = (path or "").partition("/")
        if collection != self._store.collection or not stream_id or "/" in stream_id:
            logger.warning(
                "Ignoring a write to %r: not a record of collection %r",
                path,
                self._store.collection,
            )
            return None
        return stream_id

    def _update_record(
        self,
        stream_id: str,
        expires_at: datetime.datetime,
        update_time: datetime.datetime | None,
    ) -> bool:
        option = None
        if update_time is not None:
            option = self._store.client.write_option(last_update_time=update_time)
        try:
            self._store.record_ref(stream_id).update(
                {fields.EXPIRES_AT: expires_at},
                option=option,
                retry=None,
                timeout=RPC_TIMEOUT,
            )
        except (api_exceptions.FailedPrecondition, api_exceptions.NotFound):
            logger.info(
                "Stream record changed after this event, so its next event "
                "sets the expiry",
                extra={"stream_id": stream_id},
            )
            return False
        return True

    def _update_chunks(self, stream_id: str, expires_at: datetime.datetime) -> int:
        """Set `expiresAt` on every chunk document where it differs.

        Reads only the `expiresAt` field, a page of documents at a time, in
        document id order.
        """
        query = (
            self._store.chunks_ref(stream_id)
            .select([fields.EXPIRES_AT])
            .order_by(FieldPath.document_id())
            .limit(CHUNK_PAGE_SIZE)
        )
        updated = 0

        while True:
            page = list(query.stream(retry=None, timeout=RPC_TIMEOUT))
            stale = [
                snapshot.reference
                for snapshot in page
                if (snapshot.to_dict() or {}).get(fields.EXPIRES_AT) != expires_at
            ]
            updated += self._set_expiry(stale, expires_at)
            if len(page) < CHUNK_PAGE_SIZE:
                return updated
            query = query.start_after(page[-1])

    def _set_expiry(self, refs: list[Any], expires_at: datetime.datetime) -> int:
        if not refs:
            return 0

        batch = self._store.client.batch()
        for ref in refs:
            batch.update(ref, {fields.EXPIRES_AT: expires_at})
        try:
            batch.commit(retry=None, timeout=RPC_TIMEOUT)
            return len(refs)
        except api_exceptions.NotFound:
            # A document of the batch was deleted after it was read.
            return sum(self._set_one_expiry(ref, expires_at) for ref in refs)

    def _set_one_expiry(self, ref: Any, expires_at: datetime.datetime) -> int:
        try:
            ref.update({fields.EXPIRES_AT: expires_at}, retry=None, timeout=RPC_TIMEOUT)
        except api_exceptions.NotFound:
            return 0
        return 1

    def _retrying(self, stream_id: str, operation: Callable[[], Result]) -> Result:
        delays = exponential_sleep_generator(initial=0.5, maximum=8.0)
        give_up_at = time.monotonic() + RETRY_DEADLINE

        while True:
            try:
                return operation()
            except Exception as error:
                if not is_transient(error) or time.monotonic() >= give_up_at:
                    logger.error(
                        "Setting the stream's final expiry failed: %r",
                        error,
                        extra={"stream_id": stream_id},
                    )
                    raise
                delay = next(delays)
                logger.warning(
                    "Setting the stream's final expiry failed (%r); retrying in %.1f s",
                    error,
                    delay,
                    extra={"stream_id": stream_id},
                )
                time.sleep(delay)


def finalize_stream_event(event: CloudEvent, collection: str) -> Finalized | None:
    """Handle a write event of a record in `collection` with this process's
    Firestore client."""
    store = get_runtime().manager(collection).store
    return StreamFinalizer(store).handle(event)


def on_stream_written(
    *, collection: str, **options: Any
) -> Callable[[EventFunction], EventFunction]:
    """Declare a Cloud Function that runs on every write of a stream record.

    `options` are those of firebase-functions' `on_document_written` (memory,
    timeout_sec, region, ...). The function is deployed with exactly the
    trigger that decorator declares for ``<collection>/{streamId}``. Unlike
    that decorator, this one passes the CloudEvent on undecoded, because the
    firebase-functions 0.6.0 decoder fails on the base64 bodies that the
    Firestore emulator's own trigger delivery sends.
    """
    from firebase_functions import firestore_fn

    document = f"{collection}/{{{STREAM_ID_PARAMETER}}}"

    def declare(function: EventFunction) -> EventFunction:
        decorate = firestore_fn.on_document_written(document=document, **options)
        declared: Any = decorate(cast(Any, function))
        # `firebase deploy` and the emulators find functions by this attribute.
        setattr(function, ENDPOINT_ATTRIBUTE, getattr(declared, ENDPOINT_ATTRIBUTE))
        return function

    return declare
