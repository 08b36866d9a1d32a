"""The pure wire format: frames, Accept parsing, stream ids."""

from __future__ import annotations

import json

import pytest

from durable_streams import wire


def test_chunk_frame_is_one_data_line() -> None:
    frame = wire.chunk_frame('{"a":"line\\nbreak"}', 7)

    assert frame == 'data: {"message":{"a":"line\\nbreak"},"seq":7}\n\n'
    assert json.loads(frame[len("data: ") : -2]) == {
        "message": {"a": "line\nbreak"},
        "seq": 7,
    }


def test_result_and_error_frames() -> None:
    assert wire.result_frame('"Liftoff!"') == 'data: {"result":"Liftoff!"}\n\n'
    error = wire.error_frame("INTERNAL", 'a "quoted" message')
    expected = '{"error":{"status":"INTERNAL","message":"a \\"quoted\\" message"}}'
    assert error == f"data: {expected}\n\n"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), {1, 2}, object()])
def test_encode_json_rejects_non_json_values(value: object) -> None:
    with pytest.raises(wire.JsonEncodingError):
        wire.encode_json(value)


def test_encode_json_keeps_unicode_and_escapes_line_breaks() -> None:
    assert wire.encode_json({"text": "héllo\u2028\n"}) == '{"text":"héllo\u2028\\n"}'


def test_encode_json_escapes_lone_surrogates() -> None:
    text = wire.encode_json("\ud800")

    assert text == '"\\ud800"'
    text.encode("utf-8")


def test_encode_json_escapes_only_surrogates() -> None:
    # One lone surrogate must not make every other non-ASCII character an
    # escape, which would make the text up to three times longer.
    text = wire.encode_json({"text": "é😀" * 3 + "\udc00", "key\ud83d": 1})

    assert text == '{"text":"é😀é😀é😀\\udc00","key\\ud83d":1}'
    assert json.loads(text) == {"text": "é😀" * 3 + "\udc00", "key\ud83d": 1}


def test_encode_json_rejects_deep_nesting() -> None:
    value: list[object] = []
    for _ in range(100_000):
        value = [value]
    with pytest.raises(wire.JsonEncodingError):
        wire.encode_json(value)


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("text/event-stream", True),
        ("TEXT/Event-Stream", True),
        ("application/json, text/event-stream;q=0.9", True),
        ("text/event-stream; charset=utf-8", True),
        ("text/event-stream;q=0", False),
        ("text/event-stream;q=0.0, application/json", False),
        ("application/json", False),
        ("*/*", False),
        ("", False),
        (None, False),
        ("text/event-streams", False),
    ],
)
def test_accepts_event_stream(accept: str | None, expected: bool) -> None:
    assert wire.accepts_event_stream(accept) is expected


def test_new_stream_ids_are_valid_and_distinct() -> None:
    ids = {wire.new_stream_id() for _ in range(1000)}

    assert len(ids) == 1000
    assert all(wire.is_valid_stream_id(stream_id) for stream_id in ids)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "short",
        "a" * 23,
        "a" * 21 + "/",
        "a" * 21 + ".",
        "../" + "a" * 19,
        "a" * 21 + "\n",
    ],
)
def test_is_valid_stream_id_rejects_other_formats(value: str) -> None:
    assert not wire.is_valid_stream_id(value)


def test_http_status_maps_genkit_names() -> None:
    assert wire.http_status("INVALID_ARGUMENT") == 400
    assert wire.http_status("NOT_FOUND") == 404
    assert wire.http_status("RESOURCE_EXHAUSTED") == 429
    assert wire.http_status("UNAVAILABLE") == 503
    assert wire.http_status("NO_SUCH_STATUS") == 500
