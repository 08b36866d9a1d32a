"""Firebase Auth with the standard SSE dialect, detached starts and the
Python client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from conftest import ServerFactory
from google.cloud import firestore
from test_auth import auth_env, owner_of, unknown_stream_id

from durable_streams.client import FlowClient, RetryPolicy
from support.auth_emulator import AuthEmulator, User
from support.eventsource import follow
from support.proxy import TcpProxy
from support.servers import Server

PACED = {"COUNTDOWN_TICK_SECONDS": "0.1", "STREAM_WRITE_INTERVAL_SECONDS": "0"}


@pytest.fixture
def required_server(start_server: ServerFactory, auth_emulator: AuthEmulator) -> Server:
    return start_server(env={**auth_env(auth_emulator, "required"), **PACED})


@pytest.fixture
def required_proxy(required_server: Server) -> Iterator[TcpProxy]:
    running = TcpProxy(required_server.port).up()
    yield running
    running.down()


@pytest.fixture
def alice(auth_emulator: AuthEmulator) -> User:
    return auth_emulator.sign_up()


@pytest.fixture
def bob(auth_emulator: AuthEmulator) -> User:
    return auth_emulator.sign_up()


def start_detached(server: Server, user: User, data: Any) -> str:
    response = httpx.post(
        server.url("countdown"),
        json={"data": data},
        headers={"Prefer": "respond-async", **user.headers},
        timeout=30,
    )
    assert response.status_code == 202, response.text
    stream_id: str = response.json()["streamId"]
    return stream_id


def test_detached_start_binds_stream_to_caller(
    required_server: Server, alice: User, db: firestore.Client, collection: str
) -> None:
    stream_id = start_detached(required_server, alice, 2)

    assert owner_of(db, collection, stream_id) == alice.uid


def test_detached_start_without_token_gets_401(required_server: Server) -> None:
    response = httpx.post(
        required_server.url("countdown"),
        json={"data": 2},
        headers={"Prefer": "respond-async"},
    )

    assert response.status_code == 401
    assert response.json()["error"]["status"] == "UNAUTHENTICATED"


def test_standard_get_follows_own_stream(required_server: Server, alice: User) -> None:
    stream_id = start_detached(required_server, alice, 3)

    result = follow(
        required_server.url("countdown"),
        stream_id,
        last_event_id="0",
        headers=alice.headers,
    )

    assert result.status_code == 200
    assert result.ids == [1, 2, 3]
    assert result.events[-1].json == "Liftoff!"


def test_standard_get_of_stranger_looks_unknown(
    required_server: Server, alice: User, bob: User
) -> None:
    stream_id = start_detached(required_server, alice, 3)
    other_id = unknown_stream_id()

    stranger = follow(required_server.url("countdown"), stream_id, headers=bob.headers)
    unknown = follow(required_server.url("countdown"), other_id, headers=bob.headers)

    assert stranger.status_code == 404
    assert (stranger.status_code, stranger.text) == (
        unknown.status_code,
        unknown.text.replace(other_id, stream_id),
    )


def test_standard_get_without_token_gets_401(
    required_server: Server, alice: User
) -> None:
    stream_id = start_detached(required_server, alice, 1)

    result = follow(required_server.url("countdown"), stream_id)

    assert result.status_code == 401
    assert json.loads(result.text)["error"]["status"] == "UNAUTHENTICATED"


def test_python_client_resumes_owned_stream(
    required_server: Server, required_proxy: TcpProxy, alice: User
) -> None:
    retry = RetryPolicy(initial_delay=0.1, max_delay=1.0, deadline=30.0)
    chunks: list[Any] = []
    with FlowClient(
        required_proxy.url("countdown"), headers=lambda: alice.headers, retry=retry
    ) as client:
        stream = client.stream(12)
        for chunk in stream:
            chunks.append(chunk)
            if len(chunks) in (2, 7):
                required_proxy.cut()

    assert [chunk["count"] for chunk in chunks] == list(range(12, 0, -1))
    assert stream.result == "Liftoff!"
    assert stream.reconnects == 2
    assert all(
        f"Authorization: Bearer {alice.id_token}" in request.decode()
        for request in required_proxy.requests
    )
