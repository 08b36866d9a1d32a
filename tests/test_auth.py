"""Firebase Auth on streams: owners, strangers, and bad tokens.

Tokens come from the real Auth emulator of firebase-tools, and the servers
verify them with firebase-admin against it.
"""

from __future__ import annotations

import base64
import json
import secrets
from typing import Any

import httpx
import pytest
from google.cloud import firestore

from durable_streams.auth import Caller
from durable_streams.hub import StreamHub
from durable_streams.store import StreamStore
from durable_streams.streams import StreamManager
from support.auth_emulator import AuthEmulator, User
from support.servers import Server
from support.sse import SSE_HEADERS, stream

# Headers that differ between any two responses.
VARYING_HEADERS = {"date"}


def auth_env(auth_emulator: AuthEmulator, mode: str) -> dict[str, str]:
    return {"STREAM_AUTH": mode, "FIREBASE_AUTH_EMULATOR_HOST": auth_emulator.address}


def unknown_stream_id() -> str:
    return secrets.token_urlsafe(16)


def stable_headers(response: httpx.Response) -> dict[str, str]:
    return {
        name: value
        for name, value in response.headers.items()
        if name not in VARYING_HEADERS
    }


def reconnect_raw(server: Server, stream_id: str, headers: dict[str, str]) -> Any:
    return httpx.post(
        server.url("countdown"),
        json={},
        headers={**SSE_HEADERS, "X-Genkit-Stream-Id": stream_id, **headers},
        timeout=30,
    )


def edit_token(token: str, **claims: Any) -> str:
    """Return a copy of an unsigned emulator token with some claims changed."""
    header, payload, signature = token.split(".")
    decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    decoded.update(claims)
    encoded = base64.urlsafe_b64encode(json.dumps(decoded).encode()).rstrip(b"=")
    return f"{header}.{encoded.decode()}.{signature}"


def owner_of(db: firestore.Client, collection: str, stream_id: str) -> Any:
    snapshot = db.collection(collection).document(stream_id).get()
    assert snapshot.exists, f"no record for stream {stream_id}"
    return (snapshot.to_dict() or {})["owner"]


@pytest.fixture
def required_server(start_server: Any, auth_emulator: AuthEmulator) -> Server:
    server: Server = start_server(env=auth_env(auth_emulator, "required"))
    return server


@pytest.fixture
def alice(auth_emulator: AuthEmulator) -> User:
    return auth_emulator.sign_up()


@pytest.fixture
def bob(auth_emulator: AuthEmulator) -> User:
    return auth_emulator.sign_up()


def test_required_auth_rejects_start_without_token(
    required_server: Server, db: firestore.Client, collection: str
) -> None:
    response = httpx.post(
        required_server.url("countdown"), json={"data": 2}, headers=SSE_HEADERS
    )

    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["error"]["status"] == "UNAUTHENTICATED"
    assert "Authorization: Bearer" in response.json()["error"]["message"]
    assert list(db.collection(collection).limit(1).stream()) == []


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer not-a-token",
        "Bearer a.b.c",
        "Token abc",
        "Basic dXNlcjpwYXNz",
        "bearer",
        "Bearer " + "A" * 4000,
    ],
)
def test_required_auth_rejects_malformed_tokens(
    required_server: Server, authorization: str
) -> None:
    response = httpx.post(
        required_server.url("countdown"),
        json={"data": 2},
        headers={**SSE_HEADERS, "Authorization": authorization},
    )

    assert response.status_code == 401
    assert response.json()["error"]["status"] == "UNAUTHENTICATED"
    assert "Traceback" not in response.text


def test_required_auth_rejects_tokens_of_other_projects(
    required_server: Server, alice: User
) -> None:
    # With the emulator, firebase-admin checks the claims below but neither
    # the signature nor the expiry time, so expired tokens cannot be tested.
    tokens = {
        "another project": edit_token(
            alice.id_token,
            aud="demo-another-project",
            iss="https://securetoken.google.com/demo-another-project",
        ),
        "no subject": edit_token(alice.id_token, sub=""),
    }

    for case, token in tokens.items():
        response = httpx.post(
            required_server.url("countdown"),
            json={"data": 2},
            headers={**SSE_HEADERS, "Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 401, case
        assert response.json()["error"]["status"] == "UNAUTHENTICATED", case


def test_owner_starts_and_reconnects(
    required_server: Server, alice: User, db: firestore.Client, collection: str
) -> None:
    started = stream(required_server.url("countdown"), 3, headers=alice.headers)
    assert started.status_code == 200
    assert started.stream_id is not None

    replay = stream(
        required_server.url("countdown"),
        stream_id=started.stream_id,
        headers=alice.headers,
    )

    assert owner_of(db, collection, started.stream_id) == alice.uid
    assert replay.status_code == 200
    assert replay.chunks == started.chunks
    assert replay.final == {"result": "Liftoff!"}


def test_stranger_reconnect_looks_like_unknown_stream(
    required_server: Server, alice: User, bob: User
) -> None:
    started = stream(
        required_server.url("countdown"), 2, headers=alice.headers, max_frames=1
    )
    assert started.stream_id is not None

    stranger = reconnect_raw(required_server, started.stream_id, bob.headers)
    unknown = reconnect_raw(required_server, unknown_stream_id(), bob.headers)

    assert stranger.status_code == 204
    assert stranger.content == b""
    assert (stranger.status_code, stranger.content) == (
        unknown.status_code,
        unknown.content,
    )
    assert stable_headers(stranger) == stable_headers(unknown)


def test_anonymous_reconnect_looks_like_unknown_stream(
    required_server: Server, alice: User
) -> None:
    started = stream(
        required_server.url("countdown"), 2, headers=alice.headers, max_frames=1
    )
    assert started.stream_id is not None

    anonymous = reconnect_raw(required_server, started.stream_id, {})
    unknown = reconnect_raw(required_server, unknown_stream_id(), {})

    assert anonymous.status_code == 401
    assert (anonymous.status_code, anonymous.content) == (
        unknown.status_code,
        unknown.content,
    )
    assert stable_headers(anonymous) == stable_headers(unknown)


def test_stranger_cancel_changes_nothing(
    required_server: Server,
    alice: User,
    bob: User,
    db: firestore.Client,
    collection: str,
) -> None:
    started = stream(
        required_server.url("countdown"), 400, headers=alice.headers, max_frames=1
    )
    stream_id = started.stream_id
    assert stream_id is not None
    store = StreamStore(db, collection)
    manager = StreamManager(store, StreamHub(store), "test-instance")

    by_stranger = manager.cancel(stream_id, caller=Caller(bob.uid))
    by_anonymous = manager.cancel(stream_id, caller=Caller())
    record = db.collection(collection).document(stream_id).get().to_dict() or {}

    assert by_stranger is None
    assert by_anonymous is None
    assert manager.cancel(unknown_stream_id(), caller=Caller(bob.uid)) is None
    assert record["cancelRequested"] is False
    assert record["status"] == "running"

    by_owner = manager.cancel(stream_id, caller=Caller(alice.uid))
    assert by_owner is not None
    ended = stream(
        required_server.url("countdown"), stream_id=stream_id, headers=alice.headers
    )
    assert ended.final is not None
    assert ended.final["error"]["status"] == "CANCELLED"


def test_optional_auth_binds_only_signed_in_streams(
    start_server: Any,
    auth_emulator: AuthEmulator,
    alice: User,
    bob: User,
    db: firestore.Client,
    collection: str,
) -> None:
    server = start_server(env=auth_env(auth_emulator, "optional"))
    url = server.url("countdown")
    owned = stream(url, 2, headers=alice.headers)
    unowned = stream(url, 2)
    assert owned.stream_id is not None
    assert unowned.stream_id is not None

    assert owner_of(db, collection, owned.stream_id) == alice.uid
    assert owner_of(db, collection, unowned.stream_id) is None
    assert stream(url, stream_id=owned.stream_id, headers=alice.headers).chunks == (
        owned.chunks
    )
    assert stream(url, stream_id=owned.stream_id, headers=bob.headers).status_code == (
        204
    )
    assert stream(url, stream_id=owned.stream_id).status_code == 204
    assert stream(url, stream_id=unowned.stream_id, headers=bob.headers).chunks == (
        unowned.chunks
    )
    assert stream(url, stream_id=unowned.stream_id).chunks == unowned.chunks

    bad_token = stream(url, 2, headers={"Authorization": "Bearer not-a-token"})
    assert bad_token.status_code == 401


def test_auth_off_ignores_authorization_header(
    server: Server, alice: User, db: firestore.Client, collection: str
) -> None:
    url = server.url("countdown")

    with_token = stream(url, 2, headers=alice.headers)
    with_garbage = stream(url, 2, headers={"Authorization": "Bearer not-a-token"})

    assert with_token.status_code == 200
    assert with_garbage.status_code == 200
    assert with_token.stream_id is not None
    assert owner_of(db, collection, with_token.stream_id) is None
    assert stream(url, stream_id=with_token.stream_id).chunks == with_token.chunks
