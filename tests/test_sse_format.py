"""The pure encoding of the standard SSE dialect."""

from __future__ import annotations

import httpx
import pytest

from durable_streams.sse import (
    InvalidPosition,
    chunk_event,
    comment,
    error_event,
    parse_position,
    result_event,
    retry_field,
)
from support.eventsource import FollowResult, parse_blocks


def parsed(text: str) -> FollowResult:
    result = FollowResult(200, httpx.Headers())
    parse_blocks(text, result)
    return result


def test_chunk_event_has_id_type_and_data() -> None:
    assert chunk_event('{"a":1}', 7) == 'id: 7\nevent: chunk\ndata: {"a":1}\n\n'


def test_final_events_carry_position() -> None:
    assert result_event('"done"', 3) == 'id: 3\nevent: result\ndata: "done"\n\n'
    assert error_event("ABORTED", "no", 3) == (
        'id: 3\nevent: error\ndata: {"status":"ABORTED","message":"no"}\n\n'
    )


def test_error_message_with_newlines_stays_one_line() -> None:
    result = parsed(error_event("INTERNAL", "line one\nline two\r\n", 0))

    assert result.events[0].json == {
        "status": "INTERNAL",
        "message": "line one\nline two\r\n",
    }


def test_retry_and_comment_dispatch_no_event() -> None:
    result = parsed(retry_field(2000) + comment("keep-alive"))

    assert result.events == []
    assert result.retry == 2000
    assert result.comments == ["keep-alive"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("", None), ("  ", None), ("0", 0), (" 42 ", 42)],
)
def test_parse_position_accepts_numbers(value: str | None, expected: int) -> None:
    assert parse_position(value) == expected


@pytest.mark.parametrize("value", ["-1", "+1", "1.0", "abc", "١٢", "9" * 19])
def test_parse_position_rejects_others(value: str) -> None:
    with pytest.raises(InvalidPosition, match="last event id"):
        parse_position(value)
