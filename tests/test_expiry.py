"""The trigger's decisions: when an ended stream's documents expire."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from durable_streams import record as fields
from durable_streams.expiry import final_expiry, plan_finalization
from durable_streams.record import RecordError

ENDED_AT = datetime.datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=datetime.UTC)


def _record(**changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        fields.STATUS: "done",
        fields.ENDED_AT: ENDED_AT,
        fields.TTL_SECONDS: 300.0,
        fields.TAIL_START: 0,
        fields.EXPIRES_AT: ENDED_AT + datetime.timedelta(seconds=300),
    }
    record.update(changes)
    return record


@pytest.mark.parametrize("status", ["done", "failed", "cancelled"])
def test_ended_stream_expires_one_ttl_after_its_end(status: str) -> None:
    plan = plan_finalization(_record(**{fields.STATUS: status}))

    assert plan is not None
    assert plan.expires_at == ENDED_AT + datetime.timedelta(seconds=300)
    assert not plan.record_stale


@pytest.mark.parametrize("status", ["running", "paused", None])
def test_running_or_unknown_status_needs_nothing(status: str | None) -> None:
    assert plan_finalization(_record(**{fields.STATUS: status})) is None


def test_deleted_record_needs_nothing() -> None:
    assert plan_finalization(None) is None


def test_record_with_other_expiry_is_stale() -> None:
    running_expiry = ENDED_AT + datetime.timedelta(seconds=315)

    plan = plan_finalization(_record(**{fields.EXPIRES_AT: running_expiry}))

    assert plan is not None
    assert plan.record_stale


def test_record_without_expiry_is_stale() -> None:
    record = _record()
    del record[fields.EXPIRES_AT]

    plan = plan_finalization(record)

    assert plan is not None
    assert plan.record_stale


@pytest.mark.parametrize(("tail_start", "expected"), [(0, False), (1, True)])
def test_chunk_documents_exist_when_tail_moved(tail_start: int, expected: bool) -> None:
    plan = plan_finalization(_record(**{fields.TAIL_START: tail_start}))

    assert plan is not None
    assert plan.has_chunk_documents is expected


def test_stream_own_ttl_counts_not_the_default() -> None:
    record = _record(**{fields.TTL_SECONDS: 86_400 * 3})

    assert final_expiry(record) == ENDED_AT + datetime.timedelta(days=3)


def test_fractional_ttl_keeps_microseconds() -> None:
    record = _record(**{fields.TTL_SECONDS: 0.5})

    assert final_expiry(record) == ENDED_AT + datetime.timedelta(microseconds=500_000)


def test_integer_ttl_is_accepted() -> None:
    assert final_expiry(_record(**{fields.TTL_SECONDS: 60})) == (
        ENDED_AT + datetime.timedelta(minutes=1)
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({fields.ENDED_AT: None}, "endedAt is not a timestamp"),
        ({fields.ENDED_AT: "2025-01-02"}, "endedAt is not a timestamp"),
        (
            {fields.ENDED_AT: ENDED_AT.replace(tzinfo=None)},
            "endedAt is not a timestamp",
        ),
        ({fields.TTL_SECONDS: None}, "ttlSeconds is not a number"),
        ({fields.TTL_SECONDS: True}, "ttlSeconds is not a number"),
        ({fields.TTL_SECONDS: 0}, "ttlSeconds must be positive"),
        ({fields.TTL_SECONDS: float("inf")}, "ttlSeconds must be positive"),
        ({fields.TAIL_START: "3"}, "tailStart is not an integer"),
    ],
)
def test_malformed_ended_record_raises(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(RecordError, match=message):
        plan_finalization(_record(**changes))
