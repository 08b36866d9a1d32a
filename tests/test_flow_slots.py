"""Counting the flows that run on one instance, in all and per caller."""

from __future__ import annotations

import pytest

from durable_streams.config import StreamOptions
from durable_streams.errors import ResourceExhausted
from durable_streams.limits import FlowSlots, json_depth

OPTIONS = StreamOptions(max_streams_per_instance=3, max_streams_per_caller=2)


def test_instance_limit_counts_every_caller() -> None:
    slots = FlowSlots()
    held = [slots.acquire(None, OPTIONS), slots.acquire("ada", OPTIONS)]
    held.append(slots.acquire("bob", OPTIONS))

    with pytest.raises(ResourceExhausted, match="limit 3"):
        slots.acquire(None, OPTIONS)

    held[0].release()
    assert slots.acquire("cy", OPTIONS) is not None
    assert slots.running == 3


def test_caller_limit_spares_other_callers() -> None:
    slots = FlowSlots()
    slots.acquire("ada", OPTIONS)
    slot = slots.acquire("ada", OPTIONS)

    with pytest.raises(ResourceExhausted, match="limit 2"):
        slots.acquire("ada", OPTIONS)
    assert slots.acquire("bob", OPTIONS) is not None

    slot.release()
    assert slots.running == 2
    with pytest.raises(ResourceExhausted, match="server instance"):
        slots.acquire("ada", StreamOptions(max_streams_per_instance=2))


def test_release_twice_and_occupy() -> None:
    slots = FlowSlots()
    slot = slots.acquire("ada", OPTIONS)
    slot.release()
    slot.release()

    taken = [slots.occupy("ada") for _ in range(5)]

    assert slots.running == 5
    for each in taken:
        each.release()
    assert slots.running == 0


@pytest.mark.parametrize(
    ("value", "depth"),
    [(5, 0), ([], 1), ({"a": [1, {"b": []}]}, 4), ([[[[]]], []], 4)],
)
def test_json_depth(value: object, depth: int) -> None:
    assert json_depth(value) == depth


def test_json_depth_beyond_recursion_limit() -> None:
    value: object = []
    for _ in range(5000):
        value = [value]

    assert json_depth(value) == 5001
