"""Starting, following, recovering and cancelling the streams of a collection."""

from __future__ import annotations

import datetime
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from google.api_core import exceptions as api_exceptions
from google.api_core.retry import exponential_sleep_generator

from . import record as fields
from .auth import ANONYMOUS, Caller, may_access
from .config import StreamOptions
from .errors import Cancelled, FlowError, Unavailable
from .hub import StreamHub, Subscription
from .limits import running_flows
from .producer import Producer
from .record import Lease, Status, StreamState, new_record
from .shutdown import watch_for_shutdown
from .store import StreamStore, WriteConflict, is_transient, utc_now
from .wire import is_valid_stream_id, new_stream_id

if TYPE_CHECKING:
    from .flow import DurableFlow

logger = logging.getLogger(__name__)

LEASE_GRACE = 1.0
"""Seconds past a lease's end before its producer counts as dead, allowing
for clock differences between instances."""

QUIET_LISTENER_RENEWALS = 1.5
"""A listener silent for this many lease renewal intervals of a running
stream is checked by reading the record."""

CREATE_DEADLINE = 10.0
"""Seconds a new stream's record creation is retried before the request fails."""

RECOVERY_INTERVAL = 1.0
"""Seconds between two attempts of one instance to recover one stream."""

MIN_WAIT = 0.05
"""Shortest wait of a reader for news before it looks at the stream again."""

HAND_OVER_TIMEOUT = 5.0
"""Seconds a shutting-down instance waits for its releases to be written;
Cloud Run stops an instance 10 s after SIGTERM."""

CANCEL_ATTEMPTS = 5
"""Times a cancel request is tried again when the record changes under it."""

DEAD_PRODUCER_MESSAGE = "The stream's producer stopped before the stream ended."
GONE_MESSAGE = "The stream no longer exists."
SHUTDOWN_MESSAGE = (
    "This server is shutting down; reconnect with the stream id to continue."
)


@dataclass(frozen=True)
class ChunkRun:
    """Consecutive chunks, as JSON text, starting at position `first`."""

    first: int
    texts: Sequence[str]


@dataclass(frozen=True)
class StreamEnd:
    """The end of a stream: its output or its error.

    `position` is the stream's chunk count when the end is the one stored in
    the record, and None when a follower gave up on a stream that may still
    run (a timeout, or a record that vanished).
    """

    result_json: str | None = None
    error_status: str | None = None
    error_message: str | None = None
    position: int | None = None

    @classmethod
    def failure(cls, status: str, message: str) -> StreamEnd:
        return cls(error_status=status, error_message=message)

    @classmethod
    def of(cls, state: StreamState) -> StreamEnd:
        if state.status is Status.DONE:
            return cls(result_json=state.result_json or "null", position=state.count)
        return cls(
            error_status=state.error_status or "UNKNOWN",
            error_message=state.error_message or "",
            position=state.count,
        )


@dataclass(frozen=True)
class Idle:
    """A pause with nothing new, yielded so that a caller can send a keep-alive."""


StreamEvent = ChunkRun | StreamEnd | Idle

IDLE = Idle()


class StreamManager:
    """The streams of one Firestore collection, as seen from this instance."""

    def __init__(self, store: StreamStore, hub: StreamHub, instance_id: str) -> None:
        self.store = store
        self.hub = hub
        self.instance_id = instance_id
        self.stopping = False
        self._producers: list[Producer] = []
        self._producers_lock = threading.Lock()
        self._watching = False

    def start(
        self,
        flow: DurableFlow[Any, Any],
        input_value: Any,
        input_json: str,
        *,
        caller: Caller = ANONYMOUS,
    ) -> Subscription:
        """Create a stream record owned by `caller`, start its producer, and
        subscribe to it.

        The record exists when this returns, so a client that reconnects with
        the id at once finds it. Raises `ResourceExhausted` when this instance
        or this caller already runs as many flows as the options allow, and
        `Unavailable` when this instance is shutting down.
        """
        if self.stopping:
            raise Unavailable("This server is shutting down; try again.")
        slot = running_flows.acquire(caller.uid, flow.options)
        try:
            return self._start(flow, input_value, input_json, caller, slot.release)
        except BaseException:
            slot.release()
            raise

    def _start(
        self,
        flow: DurableFlow[Any, Any],
        input_value: Any,
        input_json: str,
        caller: Caller,
        on_finished: Callable[[], None],
    ) -> Subscription:
        stream_id = new_stream_id()
        now = utc_now()
        lease = Lease(
            self.instance_id, 1, now + datetime.timedelta(seconds=flow.options.lease)
        )
        created = new_record(
            flow=flow.name,
            input_json=input_json,
            owner=caller.uid,
            lease=lease,
            now=now,
            ttl_seconds=flow.options.ttl,
        )
        update_time = self._create(stream_id, created, flow.options)
        state = StreamState.from_record(stream_id, created, update_time)

        subscription = self.hub.subscribe(stream_id, initial=state)
        producer = Producer(
            flow=flow,
            store=self.store,
            hub=self.hub,
            stream_id=stream_id,
            record=created,
            update_time=update_time,
            input_value=input_value,
            on_finished=on_finished,
        )
        producer.start(state)
        self._track(producer)
        logger.info(
            "Stream started",
            extra={
                "stream_id": stream_id,
                "flow": flow.name,
                "instance": self.instance_id,
            },
        )
        return subscription

    def _create(
        self, stream_id: str, created: dict[str, Any], options: StreamOptions
    ) -> datetime.datetime:
        """Create a record, retrying transient failures for a few seconds.

        A retry that finds the record already there means an earlier attempt
        was applied though its reply was lost; the id is random, so the
        record is this one.
        """
        delays = exponential_sleep_generator(initial=0.1, maximum=2.0)
        give_up_at = time.monotonic() + min(options.retry_deadline, CREATE_DEADLINE)
        while True:
            try:
                return self.store.create(stream_id, created)
            except api_exceptions.AlreadyExists:
                found = self.store.get(stream_id)
                if found is None:
                    raise
                return found[1]
            except Exception as error:
                if not is_transient(error) or time.monotonic() >= give_up_at:
                    raise
                delay = next(delays)
                logger.warning(
                    "Creating the stream record failed (%r); retrying in %.2f s",
                    error,
                    delay,
                    extra={"stream_id": stream_id},
                )
                time.sleep(delay)

    def subscribe(
        self, stream_id: str, *, caller: Caller = ANONYMOUS
    ) -> Subscription | None:
        """Subscribe to an existing stream.

        Returns None, exactly as for an unknown or expired stream, when the id
        is malformed or the stream belongs to another caller.
        """
        if not is_valid_stream_id(stream_id):
            return None

        subscription = self.hub.subscribe(stream_id)
        state = subscription.state
        if state is None or state.is_expired(utc_now()):
            subscription.close()
            return None

        if not may_access(caller, state.owner):
            subscription.close()
            logger.info(
                "Denied caller %s access to a stream it does not own",
                caller.uid or "anonymous",
                extra={"stream_id": stream_id},
            )
            return None
        return subscription

    def follow(
        self,
        subscription: Subscription,
        start: int,
        options: StreamOptions,
    ) -> Iterator[StreamEvent]:
        """Yield the chunks from position `start` on, live, then the end.

        A position past the chunks stored so far waits for them. While it
        waits, `IDLE` comes at least every `options.heartbeat` seconds.

        Gives up with DEADLINE_EXCEEDED after `options.timeout` without any
        change of the record. A healthy producer renews its lease every third
        of `options.lease`, so this happens only when the stream is stuck. A
        producer that misses its lease is noticed within `LEASE_GRACE` of the
        lease's end and the stream is recovered (see `recover`).
        """
        cursor = start
        last_change = time.monotonic()
        check_every = min(options.renew_interval, options.timeout)

        while True:
            version = subscription.version
            state = subscription.state
            if state is None:
                yield StreamEnd.failure("NOT_FOUND", GONE_MESSAGE)
                return

            if cursor < state.tail_start:
                try:
                    for texts in self.store.read_chunks(
                        state.stream_id, cursor, state.tail_start
                    ):
                        yield ChunkRun(cursor, texts)
                        cursor += len(texts)
                except WriteConflict:
                    yield StreamEnd.failure("NOT_FOUND", GONE_MESSAGE)
                    return
                continue

            offset = cursor - state.tail_start
            if offset < len(state.tail):
                yield ChunkRun(cursor, state.tail[offset:])
            cursor = max(cursor, state.count)

            if state.ended:
                yield StreamEnd.of(state)
                return

            if self.stopping:
                # The response would be cut without a final frame when the
                # process exits; the client reconnects to another instance.
                yield StreamEnd.failure("UNAVAILABLE", SHUTDOWN_MESSAGE)
                return

            wait = self._check_producer(subscription, state, check_every)
            changed = subscription.wait(version, min(wait, options.heartbeat))
            yield IDLE
            if changed:
                last_change = time.monotonic()
                continue

            if time.monotonic() - last_change >= options.timeout:
                yield StreamEnd.failure(
                    "DEADLINE_EXCEEDED",
                    f"The stream showed no sign of life for {options.timeout:.0f} s.",
                )
                return

            if subscription.listener_idle >= QUIET_LISTENER_RENEWALS * check_every:
                # A running producer writes at least every `check_every`, so
                # the listener missed something. Seen with listeners that stop
                # silently, and with the emulator: about 1 listener start in
                # 100 logs "ListenResponse: Wire format was corrupt" from
                # google-cloud-firestore 2.34.1, and the change is lost.
                subscription.refresh()

    def _check_producer(
        self, subscription: Subscription, state: StreamState, check_every: float
    ) -> float:
        """Recover the stream if its lease has run out; return how long to wait
        for a change before looking again."""
        now = utc_now()
        if state.lease_expired(now, LEASE_GRACE):
            self.recover(subscription)
            return RECOVERY_INTERVAL

        lease_left = (state.lease.expires_at - now).total_seconds() + LEASE_GRACE
        return max(min(check_every, lease_left), MIN_WAIT)

    def recover(self, subscription: Subscription) -> None:
        """Resume, fail or cancel a running stream whose producer missed its lease.

        A stream with a pending cancel request ends as cancelled. A resumable
        flow registered on this instance is resumed here from the last
        committed chunk; any other stream is marked failed. A write
        conditional on the record's update time makes sure that only one
        instance acts, and that a late producer is fenced off. Instance-wide,
        one attempt per stream starts every `RECOVERY_INTERVAL` at most.
        """
        if self.stopping or not subscription.recovery_lock.acquire(blocking=False):
            return
        try:
            if subscription.claim_recovery(RECOVERY_INTERVAL):
                self._recover(subscription.stream_id)
        except WriteConflict:
            logger.info(
                "Another instance recovered the stream first",
                extra={"stream_id": subscription.stream_id},
            )
        except Exception as error:
            if not is_transient(error):
                raise
            logger.warning(
                "Recovering the stream failed: %r; trying again later",
                error,
                extra={"stream_id": subscription.stream_id},
            )
        finally:
            subscription.recovery_lock.release()

    def _recover(self, stream_id: str) -> None:
        from .flow import registered_flow

        found = self.store.get(stream_id)
        if found is None:
            self.hub.publish_gone(stream_id)
            return

        stored, update_time = found
        state = StreamState.from_record(stream_id, stored, update_time)
        if not state.lease_expired(utc_now(), LEASE_GRACE):
            self.hub.publish(state)
            return

        flow = registered_flow(state.flow)
        if state.cancel_requested:
            self._end_dead(state, stored, Status.CANCELLED)
        elif flow is not None and flow.resumable:
            self._take_over(stream_id, flow, stored, update_time)
        else:
            self._end_dead(state, stored, Status.FAILED)

    def hand_over(self) -> None:
        """Release the streams of resumable flows produced here, take none
        over any more, and end local readers, because this instance is
        shutting down.

        Other instances resume the released streams within about
        `LEASE_GRACE` instead of after their leases run out. Once the
        releases are written, or after `HAND_OVER_TIMEOUT` seconds, every
        local reader gets its stream's committed chunks and then an
        `UNAVAILABLE` frame that tells the client to reconnect. Streams of other flows
        go on until the process exits.
        """
        with self._producers_lock:
            producers = [p for p in self._producers if p.resumable]
            first_call = not self.stopping
            self.stopping = True
        if first_call:
            logger.info(
                "Instance is shutting down; releasing %d streams of resumable flows",
                sum(1 for p in producers if not p.finished.is_set()),
                extra={"instance": self.instance_id},
            )
        for producer in producers:
            producer.release()

        give_up_at = time.monotonic() + HAND_OVER_TIMEOUT
        for producer in producers:
            producer.finished.wait(max(give_up_at - time.monotonic(), 0.0))
        self.hub.interrupt()

    def _track(self, producer: Producer) -> None:
        """Keep a producer for `hand_over`; the first one arms the shutdown
        watch."""
        with self._producers_lock:
            self._producers = [p for p in self._producers if not p.finished.is_set()]
            self._producers.append(producer)
            first = not self._watching
            self._watching = True
        if first:
            watch_for_shutdown(self.hand_over)

    def cancel(
        self, stream_id: str, *, caller: Caller = ANONYMOUS
    ) -> StreamState | None:
        """Ask a running stream to stop; return its state, or None if unknown.

        A malformed id, an expired stream and a stream of another caller count
        as unknown too. The producer notices the request through its listener
        or its next write, ends the stream as cancelled, and stops the flow. A
        stream whose producer is dead is marked cancelled here.
        """
        if not is_valid_stream_id(stream_id):
            return None

        for _ in range(CANCEL_ATTEMPTS):
            found = self.store.get(stream_id)
            if found is None:
                return None
            stored, update_time = found
            state = StreamState.from_record(stream_id, stored, update_time)
            if state.is_expired(utc_now()) or not may_access(caller, state.owner):
                return None
            if state.ended or state.cancel_requested:
                return state

            if state.lease_expired(utc_now(), LEASE_GRACE):
                changes = self._ending_fields(stored, Status.CANCELLED)
            else:
                changes = {fields.CANCEL_REQUESTED: True}
            try:
                new_time = self.store.update_if_unchanged(
                    stream_id, changes, expected=update_time
                )
            except WriteConflict:
                continue

            logger.info("Stream cancel requested", extra={"stream_id": stream_id})
            cancelled = StreamState.from_record(
                stream_id, {**stored, **changes}, new_time
            )
            self.hub.publish(cancelled)
            return cancelled

        raise WriteConflict(f"stream {stream_id!r} kept changing while being cancelled")

    def wait_for_end(
        self, state: StreamState, options: StreamOptions, timeout: float
    ) -> StreamState | None:
        """Wait up to `timeout` seconds for a stream to end; return its latest
        state, None if it no longer exists.

        A producer that missed its lease meanwhile is dealt with as a reader
        would, so a stream whose producer is dead ends here too.
        """
        deadline = time.monotonic() + timeout
        with self.hub.subscribe(state.stream_id, initial=state) as subscription:
            while True:
                version = subscription.version
                latest = subscription.state
                left = deadline - time.monotonic()
                if latest is None or latest.ended or left <= 0:
                    return latest
                check_every = min(options.renew_interval, options.timeout)
                wait = self._check_producer(subscription, latest, check_every)
                subscription.wait(version, min(wait, left))

    def _take_over(
        self,
        stream_id: str,
        flow: DurableFlow[Any, Any],
        stored: dict[str, Any],
        update_time: datetime.datetime,
    ) -> None:
        token = int(stored[fields.LEASE]["token"]) + 1
        now = utc_now()
        lease = Lease(
            self.instance_id,
            token,
            now + datetime.timedelta(seconds=flow.options.lease),
        )
        changes = {
            fields.LEASE: lease.to_fields(),
            fields.EXPIRES_AT: fields.running_expiry(lease, flow.options.ttl),
            fields.UPDATED_AT: now,
            fields.COMMITS: int(stored[fields.COMMITS]) + 1,
        }
        try:
            input_value = flow.parse_input(
                json.loads(stored.get(fields.INPUT) or "null")
            )
        except (FlowError, ValueError) as error:
            logger.error(
                "Stored input of stream cannot be parsed: %r",
                error,
                extra={"stream_id": stream_id},
            )
            state = StreamState.from_record(stream_id, stored, update_time)
            self._end_dead(state, stored, Status.FAILED)
            return

        new_time = self.store.update_if_unchanged(
            stream_id, changes, expected=update_time
        )
        taken = {**stored, **changes}
        state = StreamState.from_record(stream_id, taken, new_time)
        slot = running_flows.occupy(state.owner)
        producer = Producer(
            flow=flow,
            store=self.store,
            hub=self.hub,
            stream_id=stream_id,
            record=taken,
            update_time=new_time,
            input_value=input_value,
            on_finished=slot.release,
        )
        self.hub.publish(state)
        producer.start(state)
        self._track(producer)
        logger.warning(
            "Took over stream whose producer stopped; resuming at chunk %d",
            state.count,
            extra={
                "stream_id": stream_id,
                "flow": flow.name,
                "instance": self.instance_id,
            },
        )

    def _end_dead(
        self, state: StreamState, stored: dict[str, Any], status: Status
    ) -> None:
        """End a stream whose producer is dead as failed or cancelled."""
        changes = self._ending_fields(stored, status)
        new_time = self.store.update_if_unchanged(
            state.stream_id, changes, expected=state.update_time
        )
        self.hub.publish(
            StreamState.from_record(state.stream_id, {**stored, **changes}, new_time)
        )
        logger.warning(
            "Stream ended %s because its producer stopped",
            status,
            extra={"stream_id": state.stream_id, "flow": state.flow},
        )

    def _ending_fields(self, stored: dict[str, Any], status: Status) -> dict[str, Any]:
        """Return the fields that end a stream without its producer.

        The lease token moves on, so a producer that was only paused can no
        longer write.
        """
        if status is Status.CANCELLED:
            error: FlowError = Cancelled()
        else:
            error = Unavailable(DEAD_PRODUCER_MESSAGE)
        now = utc_now()
        lease = Lease(self.instance_id, int(stored[fields.LEASE]["token"]) + 1, now)
        return {
            fields.STATUS: status.value,
            fields.ERROR: {"status": error.status, "message": error.message},
            fields.ENDED_AT: now,
            fields.UPDATED_AT: now,
            fields.EXPIRES_AT: fields.ended_expiry(
                now, float(stored[fields.TTL_SECONDS])
            ),
            fields.LEASE: lease.to_fields(),
            fields.COMMITS: int(stored[fields.COMMITS]) + 1,
        }
