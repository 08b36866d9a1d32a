"""The sweep that ends streams whose producer died while no client followed them.

Readers notice a dead producer by its lease and end or resume its stream. A
stream without readers has no one to notice, so a scheduled function calls
`sweep_dead_streams` every minute. It ends each running stream whose lease
ran out as failed, or as cancelled when a cancel was pending, and so gives the
record its final `expiresAt`. Streams of resumable flows stay running, because
the next client that reconnects resumes them. If none comes, their data
expires one TTL after the lease.

Every end is a write conditional on the record's update time, so a sweep that
races a reader, a takeover or a late producer changes nothing.
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass

from .flow import registered_flow
from .record import RecordError, Status, StreamState
from .recovery import LEASE_GRACE, Recovery
from .runtime import get_runtime
from .store import WriteConflict, utc_now

logger = logging.getLogger(__name__)

SWEEP_LIMIT = 500
"""Maximum number of streams one sweep reads. The next sweep takes the rest."""


@dataclass(frozen=True)
class SweepReport:
    """Counts of the streams that one sweep of a collection ended or left."""

    ended: int = 0
    """Streams ended as failed or cancelled."""
    left_for_resumption: int = 0
    """Streams of resumable flows left for a reconnecting client to resume."""
    skipped: int = 0
    """Streams changed meanwhile, already expired, or with a malformed record."""


def sweep_dead_streams(collection: str, *, limit: int = SWEEP_LIMIT) -> SweepReport:
    """End the running streams of `collection` whose producer missed its lease."""
    recovery = get_runtime().manager(collection).recovery
    report = sweep(recovery, utc_now(), limit=limit)
    logger.info(
        "Swept streams of dead producers: %d ended, %d left for resumption, %d skipped",
        report.ended,
        report.left_for_resumption,
        report.skipped,
        extra={"collection": collection},
    )
    return report


def sweep(
    recovery: Recovery, now: datetime.datetime, *, limit: int = SWEEP_LIMIT
) -> SweepReport:
    """End the streams whose lease ended `LEASE_GRACE` seconds before `now`."""
    cutoff = now - datetime.timedelta(seconds=LEASE_GRACE)
    ended = left = skipped = 0
    for stream_id, stored, update_time in recovery.store.running_with_lease_before(
        cutoff, limit
    ):
        log = {"stream_id": stream_id}
        try:
            state = StreamState.from_record(stream_id, stored, update_time)
        except RecordError as error:
            logger.error("Sweeping the stream failed: %s", error, extra=log)
            skipped += 1
            continue
        if state.is_expired(now):
            skipped += 1
            continue

        flow = registered_flow(state.flow)
        if not state.cancel_requested and flow is not None and flow.resumable:
            left += 1
            continue

        status = Status.CANCELLED if state.cancel_requested else Status.FAILED
        try:
            recovery.end_dead(state, stored, status)
        except WriteConflict:
            logger.info(
                "Stream changed during the sweep, so the sweep left it", extra=log
            )
            skipped += 1
            continue
        ended += 1
    return SweepReport(ended=ended, left_for_resumption=left, skipped=skipped)
