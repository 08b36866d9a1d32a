"""Streams whose producer is gone: takeover, failure, and the hand-over of an
instance that shuts down."""

from __future__ import annotations

import datetime
import json
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from . import record as fields
from .errors import Cancelled, FlowError, Unavailable
from .hub import StreamHub, Subscription
from .limits import running_flows
from .producer import Producer
from .record import Lease, Status, StreamState
from .shutdown import watch_for_shutdown
from .store import StreamStore, WriteConflict, is_transient, utc_now

if TYPE_CHECKING:
    from .flow import DurableFlow

logger = logging.getLogger(__name__)

LEASE_GRACE = 1.0
"""Seconds past a lease's end before its producer counts as dead, allowing
for clock differences between instances."""

RECOVERY_INTERVAL = 1.0
"""Seconds between two attempts of one instance to recover one stream."""

MIN_WAIT = 0.05
"""Shortest wait of a reader for news before it looks at the stream again."""

HAND_OVER_TIMEOUT = 5.0
"""Seconds a shutting-down instance waits for its releases to be written;
Cloud Run stops an instance 10 s after SIGTERM."""

DEAD_PRODUCER_MESSAGE = "The stream's producer stopped before the stream ended."


class Recovery:
    """Recovers the streams of one collection whose producer missed its lease,
    and keeps this instance's producers for the hand-over at shutdown."""

    def __init__(self, store: StreamStore, hub: StreamHub, instance_id: str) -> None:
        self.store = store
        self.hub = hub
        self.instance_id = instance_id
        self.stopping = False
        self._producers: list[Producer] = []
        self._producers_lock = threading.Lock()
        self._watching = False

    def check_producer(
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
            self.end_dead(state, stored, Status.CANCELLED)
        elif flow is not None and flow.resumable:
            self.take_over(stream_id, flow, stored, update_time)
        else:
            self.end_dead(state, stored, Status.FAILED)

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

    def track(self, producer: Producer) -> None:
        """Keep a producer for `hand_over`; the first one arms the shutdown
        watch."""
        with self._producers_lock:
            self._producers = [p for p in self._producers if not p.finished.is_set()]
            self._producers.append(producer)
            first = not self._watching
            self._watching = True
        if first:
            watch_for_shutdown(self.hand_over)

    def take_over(
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
            self.end_dead(state, stored, Status.FAILED)
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
        self.track(producer)
        logger.warning(
            "Took over stream whose producer stopped; resuming at chunk %d",
            state.count,
            extra={
                "stream_id": stream_id,
                "flow": flow.name,
                "instance": self.instance_id,
            },
        )

    def end_dead(
        self, state: StreamState, stored: dict[str, Any], status: Status
    ) -> None:
        """End a stream whose producer is dead as failed or cancelled."""
        changes = self.ending_fields(stored, status)
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

    def ending_fields(self, stored: dict[str, Any], status: Status) -> dict[str, Any]:
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
