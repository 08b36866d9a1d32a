"""Clear 4xx answers to bad requests, before anything reaches Firestore."""

from __future__ import annotations

import gzip

import httpx
import pytest

from durable_streams.wire import STREAM_ID_HEADER
from support.servers import Server
from support.sse import SSE_HEADERS

JSON = {"Content-Type": "application/json"}


def assert_error(
    response: httpx.Response, http_code: int, status: str, words: str
) -> None:
    assert response.status_code == http_code
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["status"] == status
    assert words in error["message"]
    assert "Traceback" not in response.text


@pytest.mark.parametrize("headers", [JSON, {**SSE_HEADERS}])
def test_invalid_json_gets_400(server: Server, headers: dict[str, str]) -> None:
    response = httpx.post(
        server.url("countdown"), content=b'{"data": 5', headers=headers
    )
    assert_error(response, 400, "INVALID_ARGUMENT", "not valid JSON")


@pytest.mark.parametrize("body", [b"[5]", b'"five"', b"5"])
def test_body_not_an_object_gets_400(server: Server, body: bytes) -> None:
    response = httpx.post(server.url("countdown"), content=body, headers=JSON)
    assert_error(response, 400, "INVALID_ARGUMENT", "JSON object")


def test_nan_in_body_gets_400(server: Server) -> None:
    response = httpx.post(
        server.url("countdown"), content=b'{"data": NaN}', headers=JSON
    )
    assert_error(response, 400, "INVALID_ARGUMENT", "NaN")


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"],
)
def test_wrong_content_type_gets_415(server: Server, content_type: str) -> None:
    response = httpx.post(
        server.url("countdown"),
        content=b'{"data": 5}',
        headers={**SSE_HEADERS, "Content-Type": content_type},
    )
    assert_error(response, 415, "INVALID_ARGUMENT", "application/json")


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("gzip", gzip.compress(b'{"data": 5}')),
        ("br", b"\x0b\x05\x80"),
        ("gzip, identity", gzip.compress(b'{"data": 5}')),
    ],
)
def test_compressed_body_gets_415(server: Server, encoding: str, body: bytes) -> None:
    response = httpx.post(
        server.url("countdown"),
        content=body,
        headers={**JSON, "Content-Encoding": encoding},
    )
    assert_error(response, 415, "INVALID_ARGUMENT", "Content-Encoding")
    assert response.headers["accept-encoding"] == "identity"


def test_identity_encoding_is_accepted(server: Server) -> None:
    response = httpx.post(
        server.url("countdown"),
        json={"data": 1},
        headers={"Content-Encoding": "identity"},
    )
    assert response.status_code == 200
    assert response.json() == {"result": "Liftoff!"}


def test_body_over_limit_gets_413(server: Server) -> None:
    body = b'{"data": "' + b"x" * (300 * 1024) + b'"}'
    response = httpx.post(server.url("countdown"), content=body, headers=JSON)
    assert_error(response, 413, "RESOURCE_EXHAUSTED", "262144 bytes")


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_wrong_method_gets_405(server: Server, method: str) -> None:
    response = httpx.request(method, server.url("countdown"), json={"data": 1})
    assert_error(response, 405, "INVALID_ARGUMENT", "use POST")
    assert "POST" in response.headers["allow"]


@pytest.mark.parametrize(
    ("data", "shown"),
    [
        ("five", '"five"'),
        (2.5, "2.5"),
        (True, "true"),
        ({"n": 5}, '{"n": 5}'),
        ([5], "[5]"),
        (100_001, "100001"),
    ],
)
def test_bad_countdown_input_gets_400(server: Server, data: object, shown: str) -> None:
    response = httpx.post(
        server.url("countdown"), json={"data": data}, headers=SSE_HEADERS
    )
    assert_error(response, 400, "INVALID_ARGUMENT", f"got: {shown}.")


def test_stream_id_without_event_stream_gets_400(server: Server) -> None:
    headers = {**JSON, STREAM_ID_HEADER: "AAAAAAAAAAAAAAAAAAAAAA"}
    response = httpx.post(server.url("countdown"), json={"data": 2}, headers=headers)
    assert_error(response, 400, "INVALID_ARGUMENT", "not run again")


@pytest.mark.parametrize("data", [None, 0, -3])
def test_missing_or_non_positive_count_means_five(server: Server, data: object) -> None:
    body = {} if data is None else {"data": data}
    response = httpx.post(server.url("countdown"), json=body, headers=JSON, timeout=30)
    assert response.status_code == 200
    assert response.json() == {"result": "Liftoff!"}


def test_empty_body_and_init_key_are_accepted(server: Server) -> None:
    empty = httpx.post(server.url("countdown"), content=b"", timeout=30)
    with_init = httpx.post(
        server.url("countdown"), json={"data": 1, "init": {"x": 1}}, timeout=30
    )
    assert empty.status_code == 200
    assert with_init.status_code == 200
