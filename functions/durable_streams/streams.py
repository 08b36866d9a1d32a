"""Starting, following and cancelling the streams of a collection."""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from google.api_core import exceptions as api_exceptions
from google.api_core.retry import exponential_sleep_generator

from . import record as fields
from .auth import ANONYMOUS, Caller, may_access
from .config import StreamOptions
from .errors import Unavailable
from .hub import StreamHub, Subscription
from .limits import running_flows
from .producer import Producer
from .reader import StreamEvent, follow
from .record import Lease, Status, StreamState, new_record
from .recovery import LEASE_GRACE, Recovery
from .store import StreamStore, WriteConflict, is_transient, utc_now
from .wire import is_valid_stream_id, new_stream_id

if TYPE_CHECKING:
    from .flow import DurableFlow

logger = logging.getLogger(__name__)

CREATE_DEADLINE = 10.0
"""Seconds a new stream's record creation is retried before the request fails."""

CANCEL_ATTEMPTS = 5
"""Times a cancel request is tried again when the record changes under it."""


class StreamManager:
    """The streams of one Firestore collection, as seen from this instance."""

    def __init__(self, store: StreamStore, hub: StreamHub, instance_id: str) -> None:
        self.store = store
        self.hub = hub
        self.instance_id = instance_id
        self.recovery = Recovery(store, hub, instance_id)

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
        if self.recovery.stopping:
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
        self.recovery.track(producer)
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
        """Yield the chunks from position `start` on, live, then the end; see
        `reader.follow`."""
        return follow(self.store, self.recovery, subscription, start, options)

    def recover(self, subscription: Subscription) -> None:
        """Recover a stream whose producer missed its lease; see `Recovery`."""
        self.recovery.recover(subscription)

    def hand_over(self) -> None:
        """Release this instance's streams because it shuts down; see
        `Recovery.hand_over`."""
        self.recovery.hand_over()

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
                changes = self.recovery.ending_fields(stored, Status.CANCELLED)
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
                wait = self.recovery.check_producer(subscription, latest, check_every)
                subscription.wait(version, min(wait, left))
