"""The producer of one stream: runs the flow and writes what it sends.

Two threads per stream, both independent of any client connection:

- the flow thread calls the flow, which sends chunks into a buffer;
- the writer thread commits the buffer to Firestore. A write starts at once
  when the previous one is at least `write_interval` old, so a slow flow's
  chunks go out one by one, and a fast flow's chunks are coalesced into one
  write per `write_interval`. With nothing to write, the writer renews the
  lease every third of `lease`.

Every write is conditional on the record's last update time. A write that
fails this check means that someone else changed the record: a cancel
request, which the producer then honours, or a takeover by another instance,
after which this producer stops without writing again (fencing).
"""

from __future__ import annotations

import collections
import datetime
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from google.api_core.retry import exponential_sleep_generator

from . import record as fields
from .config import KIB, MIB, StreamOptions
from .context import FlowContext
from .errors import (
    Cancelled,
    FlowError,
    LeaseLost,
    ResourceExhausted,
    StoreError,
    StreamGone,
)
from .hub import StreamHub, Subscription
from .layout import Placement, place_chunks, stored_size
from .record import Lease, Status, StreamState
from .store import StreamStore, WriteConflict, is_transient, utc_now
from .wire import JsonEncodingError, encode_json

if TYPE_CHECKING:
    from .flow import DurableFlow

logger = logging.getLogger(__name__)

COMMIT_BYTES = 3 * MIB
"""Chunk bytes in one write. Firestore accepts 10 MiB per request, but the
emulator's gRPC server takes at most 4 MiB per message."""

RECORD_BUDGET = 900 * KIB
"""Bytes the record may reach, below Firestore's 1 MiB document limit."""

LEASE_LOST_LOG = "Another instance holds the stream's lease now; this producer stops"
GONE_LOG = "Stream record was deleted while the stream ran; this producer stops"

INTERNAL_MESSAGE = "Internal error."
UNSAVED_MESSAGE = "The stream could not be saved to Firestore."


class Producer:
    """Runs one flow on this instance and commits its stream."""

    def __init__(
        self,
        *,
        flow: DurableFlow[Any, Any],
        store: StreamStore,
        hub: StreamHub,
        stream_id: str,
        record: Mapping[str, Any],
        update_time: datetime.datetime,
        input_value: Any,
        on_finished: Callable[[], None] | None = None,
    ) -> None:
        self.stream_id = stream_id
        self._flow = flow
        self._options: StreamOptions = flow.options
        self._store = store
        self._hub = hub
        self._record = dict(record)
        self._update_time = update_time
        self._holder = str(record[fields.LEASE]["holder"])
        self._token = int(record[fields.LEASE]["token"])
        self._input = input_value
        self._position = int(record[fields.COUNT])

        self._condition = threading.Condition()
        self._pending: collections.deque[tuple[str, int]] = collections.deque()
        self._pending_bytes = 0
        self._ending: dict[str, Any] | None = None
        self._halted = False
        self._releasing = False
        self._stop_flow = threading.Event()
        self._last_write_start = -float("inf")
        self._renew_at = self._renewal_time()
        self._subscription: Subscription | None = None
        self._on_finished = on_finished
        self._threads_running = 2
        self.finished = threading.Event()

    @property
    def _log(self) -> dict[str, Any]:
        return {"stream_id": self.stream_id, "flow": self._flow.name}

    @property
    def resumable(self) -> bool:
        return self._flow.resumable

    def start(self, state: StreamState) -> None:
        """Start the flow and writer threads; `state` is the record as written."""
        self._subscription = self._hub.subscribe(
            self.stream_id, initial=state, callback=self._on_state
        )
        short_id = self.stream_id[:8]
        threading.Thread(
            target=self._write_loop, name=f"stream-writer-{short_id}", daemon=True
        ).start()
        threading.Thread(
            target=self._run_flow, name=f"stream-flow-{short_id}", daemon=True
        ).start()

    def cancel(self) -> None:
        """End the stream as cancelled now; the flow sees `Cancelled` next time
        it sends a chunk or sleeps."""
        with self._condition:
            if not self._stopped:
                self._ending = _ending(Status.CANCELLED, error=Cancelled())
                logger.info("Cancelling stream", extra=self._log)
            self._condition.notify_all()
        self._stop_flow.set()

    def release(self) -> None:
        """Stop the flow, commit the chunks it has sent, and give the lease up
        without ending the stream, so that another instance resumes it at once.

        Meant for resumable flows on an instance that is shutting down. A
        stream that has already ended, or is ending, is left to finish.
        """
        with self._condition:
            if self._stopped:
                return
            self._releasing = True
            self._condition.notify_all()
        self._stop_flow.set()

    # Flow thread

    def _run_flow(self) -> None:
        context = FlowContext(
            send=self._send,
            cancelled=self._stop_flow,
            stream_id=self.stream_id,
            position=self._position,
            owner=self._record.get(fields.OWNER),
        )
        try:
            output = self._flow.fn(self._input, context)
            output_json = encode_output(output, self._options)
        except FlowError as error:
            if not isinstance(error, Cancelled):
                logger.info(
                    "Flow failed with %s: %s",
                    error.status,
                    error.message,
                    extra=self._log,
                )
            self._end(_ending(Status.FAILED, error=error))
        except Exception:
            logger.exception("Flow raised an unexpected error", extra=self._log)
            self._end(
                _ending(
                    Status.FAILED, error=FlowError(INTERNAL_MESSAGE, status="INTERNAL")
                )
            )
        else:
            self._end(_ending(Status.DONE, result_json=output_json))
        finally:
            self._thread_done()

    def _send(self, chunk: Any) -> None:
        text = encode_json(chunk)
        size = stored_size(text)
        if size > self._options.max_chunk_bytes:
            raise ResourceExhausted(
                f"A chunk of {size} bytes exceeds the limit of "
                f"{self._options.max_chunk_bytes} bytes."
            )

        with self._condition:
            self._condition.wait_for(
                lambda: (
                    self._stopped
                    or self._pending_bytes < self._options.max_pending_bytes
                )
            )
            if self._stopped:
                raise Cancelled()
            self._pending.append((text, size))
            self._pending_bytes += size
            if len(self._pending) == 1:
                # The writer waits for the first chunk only; later ones join
                # the write it has already planned.
                self._condition.notify_all()

    @property
    def _stopped(self) -> bool:
        return self._halted or self._releasing or self._ending is not None

    def _end(self, ending: dict[str, Any]) -> None:
        with self._condition:
            if not self._stopped:
                self._ending = ending
            self._condition.notify_all()

    # Writer thread

    def _write_loop(self) -> None:
        try:
            while self._write_next():
                pass
        except LeaseLost:
            self._stop(LEASE_LOST_LOG)
        except StreamGone:
            self._stop(GONE_LOG)
            self._hub.publish_gone(self.stream_id)
        except StoreError as error:
            logger.error("Stream failed: %s", error, extra=self._log)
            self._fail_unsaved()
        except Exception:
            logger.exception("Writing the stream failed", extra=self._log)
            self._fail_unsaved()
        finally:
            self._halt()
            if self._subscription is not None:
                self._subscription.close()
            self.finished.set()
            self._thread_done()

    def _thread_done(self) -> None:
        """Call `on_finished` once both the flow and the writer have returned."""
        with self._condition:
            self._threads_running -= 1
            last = self._threads_running == 0
        if last and self._on_finished is not None:
            self._on_finished()

    def _write_next(self) -> bool:
        """Wait for the next write, make it, and tell whether more will follow."""
        with self._condition:
            while True:
                if self._halted:
                    return False
                now = time.monotonic()
                has_work = (
                    bool(self._pending) or self._ending is not None or self._releasing
                )
                write_at = self._last_write_start + self._options.write_interval
                renew_at = self._renew_at
                if (has_work and now >= write_at) or now >= renew_at:
                    break
                wake_at = min(write_at, renew_at) if has_work else renew_at
                self._condition.wait(wake_at - now)

            batch: list[str] = []
            batch_bytes = 0
            while self._pending and (
                not batch or batch_bytes + self._pending[0][1] <= COMMIT_BYTES
            ):
                text, size = self._pending.popleft()
                batch.append(text)
                batch_bytes += size
            ending = self._ending if not self._pending else None
            release = self._releasing and ending is None and not self._pending

        self._last_write_start = time.monotonic()
        self._write(batch, ending, release=release)
        self._renew_at = self._renewal_time()

        with self._condition:
            self._pending_bytes -= batch_bytes
            self._condition.notify_all()

        if ending is not None:
            logger.info(
                "Stream ended %s after %d chunks in %d writes",
                ending[fields.STATUS],
                self._record[fields.COUNT],
                self._record[fields.COMMITS],
                extra=self._log,
            )
            return False
        if release:
            logger.warning(
                "Released the lease after chunk %d so that another instance "
                "resumes the stream",
                self._record[fields.COUNT],
                extra=self._log,
            )
            return False
        return True

    def _write(
        self,
        batch: list[str],
        ending: dict[str, Any] | None,
        *,
        release: bool = False,
    ) -> None:
        delays = exponential_sleep_generator(initial=0.25, maximum=4.0)
        give_up_at = time.monotonic() + self._options.retry_deadline

        while True:
            # Placed anew at each attempt: a conflict may have adopted a
            # stored record with more chunks in it.
            placement = self._place(batch, ending)
            record_fields = self._fields(placement, len(batch), ending, release)
            try:
                update_time = self._commit(record_fields, placement)
            except (LeaseLost, StreamGone):
                raise
            except Exception as error:
                if not is_transient(error):
                    raise StoreError(f"writing the stream failed: {error!r}") from error
                if time.monotonic() >= give_up_at or self._halted:
                    raise StoreError(
                        "writing the stream failed for "
                        f"{self._options.retry_deadline:.0f} s: {error!r}"
                    ) from error
                delay = max(min(next(delays), give_up_at - time.monotonic()), 0.0)
                logger.warning(
                    "Writing the stream failed (%r); retrying in %.2f s",
                    error,
                    delay,
                    extra=self._log,
                )
                time.sleep(delay)
                continue
            if update_time is not None:
                break
            if time.monotonic() >= give_up_at:
                raise StoreError("the stream record kept changing under the producer")

        self._record.update(record_fields)
        self._update_time = update_time
        self._hub.publish(
            StreamState.from_record(self.stream_id, self._record, update_time)
        )

    def _renewal_time(self) -> float:
        """Return the `time.monotonic()` at which the lease is to be renewed:
        a renewal interval after the lease started.

        The lease counts from before its write, so a slow write (a cold start's
        first call, a retried one) leaves less of it, and the renewal comes
        sooner.
        """
        expires_at: datetime.datetime = self._record[fields.LEASE]["expiresAt"]
        lease_left = (expires_at - utc_now()).total_seconds()
        renew_before_end = self._options.lease - self._options.renew_interval
        return time.monotonic() + lease_left - renew_before_end

    def _commit(
        self, record_fields: dict[str, Any], placement: Placement
    ) -> datetime.datetime | None:
        """Make one write; return None if it must be made again."""
        try:
            return self._store.commit(
                self.stream_id,
                record_fields,
                placement.segments,
                expected=self._update_time,
                segment_expires_at=utc_now()
                + datetime.timedelta(seconds=self._options.chunk_retention),
            )
        except WriteConflict:
            return self._resolve_conflict(record_fields)

    def _resolve_conflict(
        self, record_fields: Mapping[str, Any]
    ) -> datetime.datetime | None:
        """Find out why a write found the record changed.

        Returns the update time if the write was applied after all (an earlier
        attempt's reply was lost), or None after adopting the stored record so
        that the write can be made again. Raises `LeaseLost` or `StreamGone`
        when this producer must stop.

        An earlier write that was given up may have been applied late as well,
        with the same commit number as this one; its chunk count or status
        tells it apart.
        """
        found = self._store.get(self.stream_id)
        if found is None:
            raise StreamGone(f"stream {self.stream_id!r} was deleted")

        stored, update_time = found
        if int(stored[fields.LEASE]["token"]) != self._token:
            raise LeaseLost(f"stream {self.stream_id!r} has a new producer")

        self._record = stored
        self._update_time = update_time
        if _is_stored(record_fields, stored):
            return update_time

        logger.info(
            "Stream record changed under the producer (commit %s, %s chunks); "
            "writing again on top of it",
            stored.get(fields.COMMITS),
            stored.get(fields.COUNT),
            extra=self._log,
        )
        if stored.get(fields.CANCEL_REQUESTED):
            self.cancel()
        return None

    def _place(self, batch: list[str], ending: dict[str, Any] | None) -> Placement:
        tail_bytes = self._options.tail_bytes
        if (
            ending is not None
            and self._final_record_size(batch, ending) > RECORD_BUDGET
        ):
            tail_bytes = 0

        return place_chunks(
            self._record[fields.TAIL_START],
            self._record[fields.TAIL],
            batch,
            tail_bytes=tail_bytes,
            segment_bytes=self._options.segment_bytes,
        )

    def _final_record_size(self, batch: list[str], ending: Mapping[str, Any]) -> int:
        texts = [*self._record[fields.TAIL], *batch]
        texts.append(self._record.get(fields.INPUT) or "")
        texts.append(ending.get(fields.RESULT) or "")
        return sum(map(stored_size, texts)) + 4 * KIB

    def _fields(
        self,
        placement: Placement,
        added: int,
        ending: Mapping[str, Any] | None,
        release: bool = False,
    ) -> dict[str, Any]:
        """Return the record fields of a write; a released lease ends now."""
        now = utc_now()
        lease_seconds = 0.0 if release else self._options.lease
        lease = Lease(
            self._holder, self._token, now + datetime.timedelta(seconds=lease_seconds)
        )
        record_fields: dict[str, Any] = {
            fields.TAIL_START: placement.tail_start,
            fields.TAIL: list(placement.tail),
            fields.COUNT: self._record[fields.COUNT] + added,
            fields.COMMITS: self._record[fields.COMMITS] + 1,
            fields.UPDATED_AT: now,
            fields.LEASE: lease.to_fields(),
            fields.EXPIRES_AT: fields.running_expiry(lease, self._options.ttl),
        }
        if ending is not None:
            record_fields.update(ending)
            record_fields[fields.ENDED_AT] = now
            record_fields[fields.EXPIRES_AT] = fields.ended_expiry(
                now, self._options.ttl
            )
        return record_fields

    # State changes seen by the listener

    def _on_state(self, state: StreamState | None) -> None:
        if state is None:
            self._stop(GONE_LOG)
        elif state.lease.token != self._token:
            self._stop(LEASE_LOST_LOG)
        elif state.cancel_requested and not state.ended:
            self.cancel()

    def _halt(self) -> None:
        with self._condition:
            self._halted = True
            self._condition.notify_all()
        self._stop_flow.set()

    def _stop(self, message: str) -> None:
        """Halt for good without writing again; log why if still running."""
        with self._condition:
            running = not self._halted
        self._halt()
        if running:
            logger.warning(message, extra=self._log)

    def _fail_unsaved(self) -> None:
        """Tell local readers that the stream failed, and record it.

        Chunks that could not be written are dropped; no reader has seen them.
        Local readers learn of the failure at once. While Firestore stays
        unreachable, recording it is retried until the stream would have
        expired anyway. It stops early when another instance has recovered
        the stream meanwhile.
        """
        if self._halted:
            return
        ending = _ending(
            Status.FAILED, error=FlowError(UNSAVED_MESSAGE, status="UNAVAILABLE")
        )
        self._publish_local(ending)
        give_up_at = time.monotonic() + self._options.lease + self._options.ttl
        logged = False

        while not self._halted:
            try:
                self._write([], ending)
                return
            except LeaseLost:
                return
            except StreamGone:
                self._hub.publish_gone(self.stream_id)
                return
            except Exception as error:
                if self._halted:
                    return
                if not logged:
                    logger.error(
                        "Recording the stream's failure failed too: %r; retrying",
                        error,
                        extra=self._log,
                    )
                    logged = True
                if time.monotonic() >= give_up_at:
                    logger.error(
                        "Gave up recording the stream's failure", extra=self._log
                    )
                    return

    def _publish_local(self, ending: Mapping[str, Any]) -> None:
        """Share an ending with local readers without writing it."""
        ended = {**self._record, **self._fields(Placement(0, (), ()), 0, ending)}
        ended[fields.TAIL] = self._record[fields.TAIL]
        ended[fields.TAIL_START] = self._record[fields.TAIL_START]
        ended[fields.COUNT] = self._record[fields.COUNT]
        moment = max(utc_now(), self._update_time + datetime.timedelta(microseconds=1))
        self._hub.publish(
            StreamState.from_record(self.stream_id, ended, moment), force=True
        )


def encode_output(output: Any, options: StreamOptions) -> str:
    """Encode a flow's output, enforcing the output size limit."""
    try:
        text = encode_json(output)
    except JsonEncodingError as error:
        logger.error("Flow output cannot be sent: %s", error)
        raise FlowError(INTERNAL_MESSAGE, status="INTERNAL") from None

    size = stored_size(text)
    if size > options.max_output_bytes:
        raise ResourceExhausted(
            f"The flow output of {size} bytes exceeds the limit of "
            f"{options.max_output_bytes} bytes."
        )
    return text


def _is_stored(record_fields: Mapping[str, Any], stored: Mapping[str, Any]) -> bool:
    """Tell whether `stored` is the record that writing `record_fields` made."""
    status = record_fields.get(fields.STATUS, Status.RUNNING.value)
    return bool(
        stored.get(fields.COMMITS) == record_fields[fields.COMMITS]
        and stored.get(fields.COUNT) == record_fields[fields.COUNT]
        and stored.get(fields.STATUS) == status
    )


def _ending(
    status: Status, *, result_json: str | None = None, error: FlowError | None = None
) -> dict[str, Any]:
    ending: dict[str, Any] = {fields.STATUS: status.value}
    if result_json is not None:
        ending[fields.RESULT] = result_json
    if error is not None:
        ending[fields.ERROR] = {
            "status": error.status,
            "message": fields.storable_text(error.message),
        }
    return ending
