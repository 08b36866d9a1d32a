"""CORS: allowed origins, preflight requests, and the exposed stream id."""

from __future__ import annotations

import httpx
import pytest
from conftest import ServerFactory

from support.eventsource import start_detached
from support.servers import Server

APP = "http://app.example"
OTHER = "http://other.example"
REQUEST_HEADERS = [
    "content-type",
    "accept",
    "authorization",
    "x-genkit-stream-id",
    "last-event-id",
    "prefer",
]


def preflight(server: Server, origin: str, method: str = "POST") -> httpx.Response:
    return httpx.options(
        server.url("countdown"),
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": ", ".join(REQUEST_HEADERS),
        },
    )


def listed(value: str | None) -> set[str]:
    return {name.strip().lower() for name in (value or "").split(",") if name.strip()}


@pytest.fixture
def restricted_server(start_server: ServerFactory) -> Server:
    return start_server(env={"CORS_ORIGINS": f"{APP}, {OTHER}"})


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_preflight_allows_any_origin_by_default(server: Server, method: str) -> None:
    response = preflight(server, "http://anywhere.example", method)

    assert response.status_code in (200, 204)
    assert response.headers["access-control-allow-origin"] in (
        "*",
        "http://anywhere.example",
    )
    assert {"get", "post", "options"} <= listed(
        response.headers.get("access-control-allow-methods")
    )
    assert set(REQUEST_HEADERS) <= listed(
        response.headers.get("access-control-allow-headers")
    )


def test_preflight_allows_configured_origin(restricted_server: Server) -> None:
    response = preflight(restricted_server, OTHER)

    assert response.headers["access-control-allow-origin"] == OTHER
    assert "origin" in listed(response.headers.get("vary"))
    assert set(REQUEST_HEADERS) <= listed(
        response.headers.get("access-control-allow-headers")
    )


def test_preflight_rejects_other_origin(restricted_server: Server) -> None:
    response = preflight(restricted_server, "http://evil.example")

    assert "access-control-allow-origin" not in response.headers
    assert "access-control-allow-headers" not in response.headers


def test_stream_response_exposes_stream_id(restricted_server: Server) -> None:
    with httpx.stream(
        "POST",
        restricted_server.url("countdown"),
        json={"data": 1},
        headers={"Accept": "text/event-stream", "Origin": APP},
    ) as response:
        response.read()

    assert response.headers["access-control-allow-origin"] == APP
    assert "x-genkit-stream-id" in listed(
        response.headers.get("access-control-expose-headers")
    )


def test_detached_start_and_get_expose_stream_id(restricted_server: Server) -> None:
    started = httpx.post(
        restricted_server.url("countdown"),
        json={"data": 1},
        headers={"Prefer": "respond-async", "Origin": APP},
    )
    followed = httpx.get(
        restricted_server.url("countdown"),
        params={"streamId": started.headers["x-genkit-stream-id"]},
        headers={"Origin": APP},
    )

    for response in (started, followed):
        assert response.headers["access-control-allow-origin"] == APP
        exposed = listed(response.headers.get("access-control-expose-headers"))
        assert {"x-genkit-stream-id", "location"} <= exposed


def test_other_origin_gets_no_cors_headers(restricted_server: Server) -> None:
    stream_id = start_detached(restricted_server.url("countdown"), 1)

    response = httpx.get(
        restricted_server.url("countdown"),
        params={"streamId": stream_id},
        headers={"Origin": "http://evil.example"},
    )

    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers
    assert "access-control-expose-headers" not in response.headers
