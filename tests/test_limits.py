"""Request limits and input checks: every bad request gets a clear 4xx or
an error frame, and never reaches Firestore."""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from google.cloud import firestore

from durable_streams.errors import InvalidArgument
from durable_streams.store import StreamStore
from durable_streams.wire import is_valid_stream_id, new_stream_id
from support.auth_emulator import AuthEmulator
from support.servers import Server
from support.sse import SSE_HEADERS, iter_frames, stream

JSON_HEADERS = {"Content-Type": "application/json"}


def post(server: Server, path: str, body: Any, **headers: str) -> httpx.Response:
    return httpx.post(
        server.url(path),
        content=body if isinstance(body, bytes) else json.dumps(body).encode(),
        headers={**SSE_HEADERS, **headers},
        timeout=30,
    )


def error_of(response: httpx.Response) -> dict[str, str]:
    error: dict[str, str] = response.json()["error"]
    return error


def nested(depth: int) -> Any:
    """Return a list nested `depth` levels deep."""
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


def open_stream(url: str, data: Any, headers: dict[str, str] | None = None) -> int:
    """Start a stream and drop the connection once the headers arrive; the
    flow goes on running on the server. Returns the status code."""
    with httpx.stream(
        "POST",
        url,
        json={"data": data},
        headers={**SSE_HEADERS, **(headers or {})},
        timeout=30,
    ) as response:
        return response.status_code


def start_when_free(url: str, data: Any, timeout: float = 30.0, **options: Any) -> Any:
    """Start a stream, retrying while the flow limit rejects it."""
    deadline = time.monotonic() + timeout
    while True:
        result = stream(url, data, **options)
        if result.status_code != 429 or time.monotonic() > deadline:
            return result
        time.sleep(0.2)


def test_stream_ids_have_128_random_bits() -> None:
    ids = {new_stream_id() for _ in range(10_000)}

    assert len(ids) == 10_000
    for stream_id in ids:
        assert is_valid_stream_id(stream_id), stream_id
        assert len(base64.urlsafe_b64decode(stream_id + "==")) == 16


@pytest.mark.parametrize(
    "stream_id",
    [
        "",
        "../../other-collection/x",
        "a/b",
        "A" * 21,
        "A" * 23,
        "A" * 21 + "B",
        "A" * 20 + "=A",
        "A" * 21 + "\u00e9",
        "%2F" * 8,
        "__name__",
    ],
)
def test_store_rejects_malformed_stream_ids(
    db: firestore.Client, stream_id: str
) -> None:
    store = StreamStore(db, "streams-never-written")

    assert not is_valid_stream_id(stream_id)
    with pytest.raises(InvalidArgument):
        store.record_ref(stream_id)


@pytest.mark.parametrize(
    "stream_id",
    ["../../x", "a/b", "A" * 21, "A" * 23, "A" * 21 + "B", "__.*__", "A" * 2000],
)
def test_reconnect_with_malformed_id_gets_204(server: Server, stream_id: str) -> None:
    response = post(server, "countdown", {}, **{"X-Genkit-Stream-Id": stream_id})

    assert response.status_code == 204
    assert response.content == b""


@pytest.mark.parametrize(
    ("method", "body", "headers", "code", "status"),
    [
        ("GET", None, {}, 400, "INVALID_ARGUMENT"),
        ("PUT", None, {}, 405, "INVALID_ARGUMENT"),
        ("POST", b"\xff\xfe\xfa", JSON_HEADERS, 400, "INVALID_ARGUMENT"),
        ("POST", b'{"data": 1e400}', JSON_HEADERS, 400, "INVALID_ARGUMENT"),
        ("POST", b'{"data": -1e400}', JSON_HEADERS, 400, "INVALID_ARGUMENT"),
        ("POST", b'{"data": 1' + b"0" * 5000 + b"}", JSON_HEADERS, 400, None),
    ],
)
def test_bad_requests_get_clear_errors(
    server: Server,
    method: str,
    body: bytes | None,
    headers: dict[str, str],
    code: int,
    status: str | None,
) -> None:
    response = httpx.request(
        method, server.url("echo"), content=body, headers={**SSE_HEADERS, **headers}
    )

    assert response.status_code == code
    assert response.headers["content-type"] == "application/json"
    assert error_of(response)["status"] == (status or "INVALID_ARGUMENT")
    assert "Traceback" not in response.text


@pytest.mark.parametrize(
    ("method", "params", "headers"),
    [
        ("GET", {"streamId": "A" * 50_000}, {}),
        ("GET", {"streamId": "A" * 22, "lastEventId": "9" * 50_000}, {}),
        ("GET", {"streamId": "A" * 22}, {"Last-Event-ID": "x" * 8_000}),
        ("POST", {}, {"X-Genkit-Stream-Id": "A" * 22, "Last-Event-ID": "x" * 8_000}),
    ],
)
def test_rejected_values_are_quoted_short(
    server: Server, method: str, params: dict[str, str], headers: dict[str, str]
) -> None:
    # functions-framework sets no limit on the request line, so a query
    # value can be megabytes long.
    response = httpx.request(
        method,
        server.url("countdown"),
        params=params,
        json={},
        headers={**SSE_HEADERS, **headers},
        timeout=30,
    )

    message = error_of(response)["message"]
    assert response.status_code == 400
    assert len(message) < 300, message[:300]
    assert max(len(line) for line in server.logs().splitlines()) < 5_000


def test_chunked_body_over_size_limit_gets_413(server: Server) -> None:
    limit = 256 * 1024

    def chunked() -> Iterator[bytes]:
        yield b'{"data": "'
        for _ in range(limit // 4096 + 1):
            yield b"x" * 4096
        yield b'"}'

    without_length = httpx.post(
        server.url("echo"), content=chunked(), headers=SSE_HEADERS, timeout=30
    )

    assert without_length.status_code == 413
    assert error_of(without_length)["status"] == "RESOURCE_EXHAUSTED"


def test_body_at_size_limit_is_accepted(start_server: Any) -> None:
    server = start_server(env={"STREAM_MAX_REQUEST_BYTES": "1000"})
    body = json.dumps({"data": "x" * 980}).encode()
    body += b" " * (1000 - len(body))

    accepted = post(server, "echo", body)
    rejected = post(server, "echo", body + b" ")

    assert accepted.status_code == 200
    assert rejected.status_code == 413


def test_json_nesting_limit(server: Server) -> None:
    # The body object is level 1, so `data` may nest 31 more levels.
    at_limit = stream(server.url("echo"), nested(31))
    over_limit = post(server, "echo", {"data": nested(32)})
    far_over = post(
        server, "echo", b'{"data":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    )

    assert at_limit.status_code == 200
    assert at_limit.final == {"result": nested(31)}
    assert over_limit.status_code == 400
    assert "deeper than 32 levels" in error_of(over_limit)["message"]
    assert far_over.status_code == 400
    assert "deeper than 32 levels" in error_of(far_over)["message"]


def test_chunk_and_output_limits_end_stream(start_server: Any) -> None:
    server = start_server(
        env={"STREAM_MAX_CHUNK_BYTES": "2000", "STREAM_MAX_OUTPUT_BYTES": "1000"}
    )

    big_chunk = stream(server.url("blast"), {"count": 1, "size": 2000})
    big_output = stream(server.url("echo"), "y" * 1500)
    plain_call = httpx.post(
        server.url("blast"), json={"data": {"count": 1, "size": 2000}}
    )

    assert big_chunk.final is not None
    assert big_chunk.final["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert "limit of 2000 bytes" in big_chunk.final["error"]["message"]
    assert big_output.final is not None
    assert big_output.final["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert "limit of 1000 bytes" in big_output.final["error"]["message"]
    assert plain_call.status_code == 429
    assert error_of(plain_call)["status"] == "RESOURCE_EXHAUSTED"


def test_chunk_and_output_at_exact_limits(start_server: Any) -> None:
    server = start_server(
        env={"STREAM_MAX_CHUNK_BYTES": "2000", "STREAM_MAX_OUTPUT_BYTES": "1000"}
    )

    # Sizes count as Firestore stores strings: UTF-8 bytes plus one. The JSON
    # text of a blast chunk is 16 bytes plus its padding, and that of a string
    # output is 2 bytes plus its characters.
    chunk_at_limit = stream(server.url("blast"), {"count": 1, "size": 1983})
    chunk_over = stream(server.url("blast"), {"count": 1, "size": 1984})
    output_at_limit = stream(server.url("echo"), "é" * 498 + "y")
    output_over = stream(server.url("echo"), "y" * 998)

    assert chunk_at_limit.final == {"result": {"sent": 1}}
    assert chunk_over.final is not None
    assert chunk_over.final["error"]["message"] == (
        "A chunk of 2001 bytes exceeds the limit of 2000 bytes."
    )
    assert output_at_limit.final == {"result": "é" * 498 + "y"}
    assert output_over.final is not None
    assert output_over.final["error"]["message"] == (
        "The flow output of 1001 bytes exceeds the limit of 1000 bytes."
    )


def test_lone_surrogate_keeps_chunk_size(server: Server) -> None:
    # 200 KB of two-byte characters and one lone surrogate, sent back as a
    # chunk and as the output; both stay under their 256 KiB limits.
    text = "é" * 100_000 + "\ud800"
    body = b'{"data": "' + ("é" * 100_000).encode() + b'\\ud800"}'

    with httpx.stream(
        "POST", server.url("echo"), content=body, headers=SSE_HEADERS, timeout=60
    ) as response:
        frames = list(iter_frames(response))

    assert response.status_code == 200
    assert frames[0] == {"message": text, "seq": 0}
    assert frames[-1] == {"result": text}


def test_instance_flow_limit(start_server: Any) -> None:
    server = start_server(env={"STREAM_MAX_STREAMS_PER_INSTANCE": "2"})
    url = server.url("think")

    running = [open_stream(url, {"seconds": 2}) for _ in range(2)]
    rejected = post(server, "think", {"data": {"seconds": 0}})
    rejected_call = httpx.post(url, json={"data": {"seconds": 0}})

    assert running == [200, 200]
    assert rejected.status_code == 429
    assert error_of(rejected)["status"] == "RESOURCE_EXHAUSTED"
    assert "limit 2" in error_of(rejected)["message"]
    assert rejected_call.status_code == 429

    later = start_when_free(url, {"seconds": 0})
    assert later.status_code == 200
    assert later.final == {"result": "done"}


def test_caller_flow_limit(start_server: Any, auth_emulator: AuthEmulator) -> None:
    server = start_server(
        env={
            "STREAM_AUTH": "required",
            "FIREBASE_AUTH_EMULATOR_HOST": auth_emulator.address,
            "STREAM_MAX_STREAMS_PER_CALLER": "1",
        }
    )
    url = server.url("think")
    alice, bob = auth_emulator.sign_up(), auth_emulator.sign_up()

    first = open_stream(url, {"seconds": 2}, alice.headers)
    second = post(server, "think", {"data": {"seconds": 0}}, **alice.headers)
    other_user = stream(url, {"seconds": 0}, headers=bob.headers)

    assert first == 200
    assert second.status_code == 429
    assert error_of(second)["status"] == "RESOURCE_EXHAUSTED"
    assert "your flows" in error_of(second)["message"]
    assert other_user.status_code == 200
    assert other_user.final == {"result": "done"}

    later = start_when_free(url, {"seconds": 0}, headers=alice.headers)
    assert later.status_code == 200


@pytest.mark.parametrize("data", [10**30, "5", -1.0, "x" * 100_000, [0] * 10_000])
def test_countdown_rejects_input_out_of_range(server: Server, data: Any) -> None:
    response = post(server, "countdown", {"data": data})
    message = error_of(response)["message"]

    assert response.status_code == 400
    assert error_of(response)["status"] == "INVALID_ARGUMENT"
    assert json.dumps(data)[:20] in message
    assert len(message) < 200


@pytest.mark.parametrize(("data", "count"), [(None, 5), (0, 5), (-7, 5), (3, 3)])
def test_countdown_input_in_range(server: Server, data: Any, count: int) -> None:
    result = stream(server.url("countdown"), data)

    assert [chunk["count"] for chunk in result.chunks] == list(range(count, 0, -1))
    assert result.final == {"result": "Liftoff!"}


def test_countdown_accepts_its_maximum(server: Server) -> None:
    result = stream(server.url("countdown"), 100_000, max_frames=1)

    assert result.status_code == 200
    assert result.chunks[0]["count"] == 100_000


def test_flow_crash_reaches_client_as_internal(server: Server) -> None:
    streamed = stream(server.url("crash"))
    called = httpx.post(server.url("crash"), json={"data": None})

    assert streamed.chunks == ["before the crash"]
    assert streamed.final == {
        "error": {"status": "INTERNAL", "message": "Internal error."}
    }
    assert called.status_code == 500
    assert called.json() == {
        "error": {"status": "INTERNAL", "message": "Internal error."}
    }
    assert "hunter2" not in called.text

    logged = _log_lines_with(server, "hunter2")
    assert any(line.get("stream_id") == streamed.stream_id for line in logged)
    assert all(line["severity"] == "ERROR" for line in logged)


def _log_lines_with(server: Server, text: str) -> list[dict[str, Any]]:
    """Return the server's JSON log lines that contain `text`, waiting briefly
    because the flow thread logs after the stream has ended."""
    deadline = time.monotonic() + 10
    while True:
        lines = [
            json.loads(line)
            for line in server.logs().splitlines()
            if text in line and line.startswith("{")
        ]
        if lines or time.monotonic() > deadline:
            return lines
        time.sleep(0.1)


def test_unknown_stream_id_gets_204(server: Server) -> None:
    response = post(
        server, "countdown", {}, **{"X-Genkit-Stream-Id": secrets.token_urlsafe(16)}
    )

    assert response.status_code == 204
