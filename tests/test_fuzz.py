"""Random requests against the deployed countdown function.

Hypothesis draws methods, paths, headers, `Accept` values, tokens, stream ids
and bodies, and sends each request to a server this test starts on loopback,
with Firebase Auth on (``optional``) against the Auth emulator. No client
mistake may get a 5xx or a traceback, and afterwards the same server must
still stream and replay countdowns correctly and must have logged no error.
The number of requests is fixed by `REQUESTS`, so the run ends by itself.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.auth_emulator import AuthEmulator, User
from support.servers import FUNCTIONS, Server
from support.sse import stream

REQUESTS = 600
"""Requests one run sends; they took 15 to 45 s on a shared 2-core machine."""

READ_BYTES = 16 * 1024
"""Bytes read of each response before the connection is dropped."""

TRACEBACK_MARKERS = ("Traceback (most recent call last)", 'File "/')

PRINTABLE = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
LATIN_1 = st.characters(min_codepoint=0xA0, max_codepoint=0xFF)


@dataclass(frozen=True)
class Target:
    """The server under test, a signed-in user, and two existing streams."""

    server: Server
    user: User
    owned_stream: str
    open_stream: str


@pytest.fixture
def target(start_server: Any, auth_emulator: AuthEmulator) -> Target:
    server: Server = start_server(
        source=FUNCTIONS / "main.py",
        target="countdown",
        env={
            "STREAM_AUTH": "optional",
            "FIREBASE_AUTH_EMULATOR_HOST": auth_emulator.address,
            "COUNTDOWN_TICK_SECONDS": "0.001",
        },
    )
    user = auth_emulator.sign_up()
    owned = stream(server.url("countdown"), 3, headers=user.headers)
    anonymous = stream(server.url("countdown"), 3)
    assert owned.stream_id is not None
    assert anonymous.stream_id is not None
    return Target(server, user, owned.stream_id, anonymous.stream_id)


def methods() -> st.SearchStrategy[str]:
    # POST is drawn about three times in four, so most requests reach the flow.
    common = st.sampled_from(["GET", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
    random = st.from_regex(r"[A-Z]{1,10}", fullmatch=True)
    return st.just("POST") | st.just("POST") | st.just("POST") | common | random


def paths() -> st.SearchStrategy[str]:
    fixed = st.sampled_from(
        ["/countdown", "/", "/countdown?stream=true", "/x/y?stream=1&a=%ff"]
    )
    random = st.text(
        alphabet=st.characters(
            min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="#?%"
        ),
        max_size=30,
    ).map(lambda text: "/" + text)
    return fixed | random


def accept_values() -> st.SearchStrategy[str | None]:
    media = st.sampled_from(
        [
            "text/event-stream",
            "TEXT/Event-Stream",
            "text/event-stream;q=0",
            "text/event-stream; q=0.5",
            "text/event-stream;q=abc",
            "application/json",
            "*/*",
            "text/*",
        ]
    )
    listed = st.lists(media, min_size=1, max_size=3).map(", ".join)
    return st.none() | listed | st.text(PRINTABLE, max_size=60)


def content_types() -> st.SearchStrategy[str | None]:
    return (
        st.none()
        | st.sampled_from(
            [
                "application/json",
                "application/json; charset=utf-16",
                "application/ld+json",
                "text/plain",
                "application/x-www-form-urlencoded",
                "multipart/form-data; boundary=x",
            ]
        )
        | st.text(PRINTABLE, max_size=40)
    )


def json_values() -> st.SearchStrategy[Any]:
    scalars = (
        st.none()
        | st.booleans()
        | st.integers(-20, 50)
        | st.integers(min_value=100_001)
        | st.integers(max_value=-1)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=40)
    )
    return st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=8), children, max_size=4)
        ),
        max_leaves=12,
    )


def bodies() -> st.SearchStrategy[bytes]:
    def deep(depth: int) -> bytes:
        return b'{"data":' + b"[" * depth + b"]" * depth + b"}"

    def padded(size: int) -> bytes:
        return b'{"data": "' + b"x" * (size - 12) + b'"}'

    as_json = st.builds(
        lambda value: json.dumps({"data": value}).encode(), json_values()
    )
    any_json = json_values().map(lambda value: json.dumps(value).encode())
    raw_text = st.sampled_from(
        [b"", b"{}", b"{", b'{"data": NaN}', b'{"data": 1e999}', b"null", b"[]"]
    )
    return (
        as_json
        | any_json
        | raw_text
        | st.binary(max_size=200)
        | st.integers(1, 3_000).map(deep)
        | st.integers(256 * 1024 - 8, 256 * 1024 + 8).map(padded)
    )


@st.composite
def stream_ids(draw: st.DrawFn, known: tuple[str, ...]) -> str | None:
    return draw(
        st.none()
        | st.sampled_from(known)
        | st.just(secrets.token_urlsafe(16))
        | st.text(PRINTABLE, max_size=40)
        | st.text(LATIN_1, min_size=1, max_size=5)
    )


@st.composite
def requests(draw: st.DrawFn, target: Target) -> httpx.Request:
    headers: dict[str, bytes] = {}
    optional = {
        "Accept": accept_values(),
        "Content-Type": content_types(),
        "X-Genkit-Stream-Id": stream_ids((target.owned_stream, target.open_stream)),
        "Authorization": st.none()
        | st.just(f"Bearer {target.user.id_token}")
        | st.text(PRINTABLE, max_size=60).map(lambda text: "Bearer " + text)
        | st.text(PRINTABLE, max_size=60),
        "Last-Event-ID": st.none() | st.text(PRINTABLE, max_size=20),
        "Origin": st.none() | st.sampled_from(["http://localhost:3000", "null"]),
    }
    for name, values in optional.items():
        value = draw(values)
        if value is not None and value.strip() == value:
            headers[name] = value.encode("latin-1")

    for name, value in draw(
        st.dictionaries(
            st.from_regex(r"X-[A-Za-z0-9-]{1,20}", fullmatch=True),
            st.text(PRINTABLE, max_size=40).map(str.strip),
            max_size=3,
        )
    ).items():
        headers[name] = value.encode("latin-1")

    body = draw(bodies())
    content: bytes | Iterator[bytes] = body
    if draw(st.booleans()):
        # Sent with chunked transfer encoding, without a Content-Length.
        content = iter([body[:7], body[7:]])

    return httpx.Request(
        draw(methods()),
        target.server.base_url + draw(paths()),
        headers=headers,
        content=content,
    )


def send(client: httpx.Client, request: httpx.Request) -> tuple[int, str, bytes]:
    """Send a request and return status, content type and the first bytes."""
    response = client.send(request, stream=True)
    try:
        body = b""
        for piece in response.iter_raw():
            body += piece
            if len(body) >= READ_BYTES:
                break
        return response.status_code, response.headers.get("content-type", ""), body
    finally:
        response.close()


def check_response(status: int, content_type: str, body: bytes) -> None:
    text = body.decode("utf-8", errors="replace")
    assert status < 500, f"server error {status}: {text[:300]}"
    for marker in TRACEBACK_MARKERS:
        assert marker not in text, f"traceback in response: {text[:300]}"
    if status >= 400 and content_type == "application/json" and body:
        assert len(body) < 2048, f"error body of {len(body)} bytes: {text[:300]}"
        error = json.loads(body)["error"]
        assert set(error) == {"status", "message"}
        assert error["message"]


def test_random_requests_never_break_server(target: Target) -> None:
    started = time.monotonic()
    seen: dict[int, int] = {}

    with httpx.Client(timeout=30) as client:

        @settings(
            max_examples=REQUESTS,
            deadline=None,
            database=None,
            suppress_health_check=[
                HealthCheck.function_scoped_fixture,
                HealthCheck.too_slow,
                HealthCheck.data_too_large,
            ],
        )
        @given(request=requests(target))
        def one_request(request: httpx.Request) -> None:
            status, content_type, body = send(client, request)
            seen[status] = seen.get(status, 0) + 1
            check_response(status, content_type, body)

        one_request()

    print(
        f"{sum(seen.values())} requests in {time.monotonic() - started:.1f} s: {seen}"
    )
    assert target.server.process is not None
    assert target.server.process.poll() is None, "the server process exited"
    assert_still_serves(target)
    assert_no_error_logged(target.server)


def assert_still_serves(target: Target) -> None:
    url = target.server.url("countdown")

    fresh = stream(url, 4, headers=target.user.headers)
    replay = stream(url, stream_id=fresh.stream_id, headers=target.user.headers)
    earlier = stream(url, stream_id=target.owned_stream, headers=target.user.headers)

    assert fresh.status_code == 200
    assert [chunk["count"] for chunk in fresh.chunks] == [4, 3, 2, 1]
    assert fresh.final == {"result": "Liftoff!"}
    assert replay.chunks == fresh.chunks
    assert replay.final == fresh.final
    assert [chunk["count"] for chunk in earlier.chunks] == [3, 2, 1]


def assert_no_error_logged(server: Server) -> None:
    errors = [
        line
        for line in server.logs().splitlines()
        if line.startswith("{") and _is_error(json.loads(line))
    ]
    assert errors == [], "\n".join(errors[:5])


def _is_error(entry: dict[str, Any]) -> bool:
    if entry.get("severity") not in ("ERROR", "CRITICAL"):
        return False
    # NOTE: the Python gRPC client sometimes fails to parse a ListenResponse
    # of the Firestore emulator ("Wire format was corrupt"). It was seen on
    # the first stream of a server, before any random request, and that
    # stream still ended correctly.
    return entry.get("logger") != "grpc._common"
