"""The countdown flow of Genkit's durable-streaming sample.

For N down to 1 it waits one tick and sends a chunk; its output is
"Liftoff!". The tick is 1 s unless `COUNTDOWN_TICK_SECONDS` sets it.
"""

from __future__ import annotations

import datetime
import json
import os
from typing import Any

from durable_streams import DurableFlow, FlowContext, InvalidArgument

DEFAULT_COUNT = 5
MAX_COUNT = 100_000
SHOWN_CHARACTERS = 40
"""Characters of a rejected input quoted in the error message."""


def parse_count(data: Any) -> int:
    """Return the number to count down from: an integer, 0 or less meaning 5."""
    if data is None:
        return DEFAULT_COUNT
    if isinstance(data, bool) or not isinstance(data, int):
        raise InvalidArgument(f"The input must be an integer, got: {_shown(data)}.")
    if data > MAX_COUNT:
        raise InvalidArgument(
            f"The input must be at most {MAX_COUNT}, got: {_shown(data)}."
        )
    return data if data > 0 else DEFAULT_COUNT


def _shown(data: Any) -> str:
    """The input as JSON text, cut after `SHOWN_CHARACTERS` characters."""
    text = json.dumps(data, ensure_ascii=False)
    if len(text) <= SHOWN_CHARACTERS:
        return text
    return text[:SHOWN_CHARACTERS] + "..."


def tick_seconds() -> float:
    return float(os.environ.get("COUNTDOWN_TICK_SECONDS", "1"))


def count_down(count: int, context: FlowContext) -> str:
    """Send T-count ... T-1, one per tick, and return "Liftoff!".

    After a takeover, `context.position` chunks were already sent, so the
    countdown goes on from where the last producer stopped.
    """
    tick = tick_seconds()
    for remaining in range(count - context.position, 0, -1):
        context.sleep(tick)
        context.send_chunk(
            {
                "count": remaining,
                "message": f"T-{remaining}...",
                "timestamp": datetime.datetime.now(datetime.UTC).isoformat(),
            }
        )
    return "Liftoff!"


countdown_flow = DurableFlow(
    count_down, name="countdown", resumable=True, parse_input=parse_count
)
