"""Limits on what one request, and one caller, may ask of an instance.

The request body is parsed here with limits on nesting depth and on number
values, and the flows running on this instance are counted, in all and per
caller. The size limits of bodies, chunks and outputs are checked where the
bytes are read or written (`handler.py`, `producer.py`). Each limit is an
option of `StreamOptions`.
"""

from __future__ import annotations

import collections
import json
import logging
import math
import threading
from typing import Any

from .config import StreamOptions
from .errors import InvalidArgument, ResourceExhausted

logger = logging.getLogger(__name__)


def load_json(body: bytes, max_depth: int) -> Any:
    """Parse a JSON request body; raise `InvalidArgument` for a bad one.

    NaN, infinities and numbers too large for a float are rejected because
    Genkit clients cannot read them back, and so is nesting of arrays and
    objects deeper than `max_depth` levels.
    """
    try:
        value = json.loads(
            body, parse_constant=_reject_constant, parse_float=_finite_float
        )
    except RecursionError:
        raise _too_deep(max_depth) from None
    except ValueError as error:
        raise InvalidArgument(f"The request body is not valid JSON: {error}") from None

    if json_depth(value) > max_depth:
        raise _too_deep(max_depth)
    return value


def json_depth(value: Any) -> int:
    """Return how deeply arrays and objects nest in a parsed JSON value.

    A scalar has depth 0 and ``[]`` or ``{}`` depth 1. The walk keeps its own
    stack, so any value the JSON parser built can be measured.
    """
    deepest = 0
    pending: list[tuple[Any, int]] = [(value, 0)]

    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth + 1)
        pending.extend((child, depth + 1) for child in children)

    return deepest


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in JSON")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"the number {text[:40]} is too large")
    return number


def _too_deep(max_depth: int) -> InvalidArgument:
    return InvalidArgument(
        f"The request body nests arrays and objects deeper than {max_depth} levels."
    )


class Slot:
    """One running flow's place in the instance's count; release it once."""

    def __init__(self, slots: FlowSlots, caller: str | None) -> None:
        self._slots = slots
        self._caller = caller
        self._released = False
        self._lock = threading.Lock()

    def release(self) -> None:
        """Give the place back; later calls do nothing."""
        with self._lock:
            if self._released:
                return
            self._released = True
        self._slots._release(self._caller)

    def __enter__(self) -> Slot:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


class FlowSlots:
    """The flows running on this instance, counted in all and per caller.

    A caller is a Firebase Auth uid; flows of anonymous callers count towards
    the instance's total only.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._total = 0
        self._per_caller: collections.Counter[str] = collections.Counter()

    @property
    def running(self) -> int:
        return self._total

    def acquire(self, caller: str | None, options: StreamOptions) -> Slot:
        """Take a place for a new flow, or raise `ResourceExhausted`."""
        with self._lock:
            if self._total >= options.max_streams_per_instance:
                logger.warning(
                    "Rejected a flow: %d flows run on this instance, the limit",
                    self._total,
                )
                raise ResourceExhausted(
                    "Too many flows are running on this server instance (limit "
                    f"{options.max_streams_per_instance}); try again later."
                )

            if (
                caller is not None
                and self._per_caller[caller] >= options.max_streams_per_caller
            ):
                logger.info(
                    "Rejected a flow: caller %s runs %d flows, the limit",
                    caller,
                    self._per_caller[caller],
                )
                raise ResourceExhausted(
                    "Too many of your flows are running at once (limit "
                    f"{options.max_streams_per_caller}); wait for one to end."
                )

            return self._take(caller)

    def occupy(self, caller: str | None) -> Slot:
        """Take a place without checking the limits, for a flow that must run,
        such as a stream taken over from a dead producer."""
        with self._lock:
            return self._take(caller)

    def _take(self, caller: str | None) -> Slot:
        self._total += 1
        if caller is not None:
            self._per_caller[caller] += 1
        return Slot(self, caller)

    def _release(self, caller: str | None) -> None:
        with self._lock:
            self._total -= 1
            if caller is not None:
                self._per_caller[caller] -= 1
                if self._per_caller[caller] <= 0:
                    del self._per_caller[caller]


running_flows = FlowSlots()
"""The flows running in this process, which is one instance."""
