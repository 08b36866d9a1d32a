"""firestore.rules in the emulator: clients can neither read nor write streams.

Requests go to the emulator's REST API as a client SDK sends them: without
credentials, or with a Firebase ID token of a signed-in user. The emulator
accepts unsigned ID tokens. The `Bearer owner` token stands for the Admin
SDK, which rules do not apply to, and writes the documents under test.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from durable_streams.config import DEFAULT_COLLECTION
from firestore_emulator import Emulator

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "firestore.rules"
PROJECT = "demo-rules-test"
STREAM = f"{DEFAULT_COLLECTION}/stream-1"
CHUNK = f"{STREAM}/chunks/0000000001"
ADMIN = {"Authorization": "Bearer owner"}


def _id_token(uid: str, project: str = PROJECT) -> str:
    """Return an unsigned Firebase ID token, as the Auth emulator issues them."""

    def encode(part: dict[str, Any]) -> str:
        text = json.dumps(part).encode()
        return base64.urlsafe_b64encode(text).decode().rstrip("=")

    now = int(time.time())
    claims = {
        "iss": f"https://securetoken.google.com/{project}",
        "aud": project,
        "auth_time": now,
        "iat": now,
        "exp": now + 3600,
        "sub": uid,
        "user_id": uid,
        "firebase": {"identities": {}, "sign_in_provider": "password"},
    }
    return f"{encode({'alg': 'none', 'typ': 'JWT'})}.{encode(claims)}."


CLIENTS = {
    "anonymous": {},
    "signed-in user": {"Authorization": f"Bearer {_id_token('alice')}"},
}


def _load_rules(emulator: Emulator, project: str, rules: str) -> None:
    response = httpx.put(
        f"http://{emulator.address}/emulator/v1/projects/{project}:securityRules",
        json={"rules": {"files": [{"name": "firestore.rules", "content": rules}]}},
    )
    assert response.status_code == 200, response.text


class Documents:
    """The REST API of one emulated project's database."""

    def __init__(self, emulator: Emulator, project: str) -> None:
        self.base = (
            f"http://{emulator.address}/v1/projects/{project}"
            "/databases/(default)/documents"
        )

    def request(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: dict[str, Any] | None = None,
    ) -> httpx.Response:
        return httpx.request(method, f"{self.base}/{path}", headers=headers, json=body)

    def query(self, collection_id: str, headers: dict[str, str]) -> httpx.Response:
        body = {
            "structuredQuery": {
                "from": [{"collectionId": collection_id, "allDescendants": True}]
            }
        }
        return httpx.post(f"{self.base}:runQuery", headers=headers, json=body)


@pytest.fixture(scope="module")
def documents(emulator: Emulator) -> Documents:
    _load_rules(emulator, PROJECT, RULES.read_text())
    documents = Documents(emulator, PROJECT)
    for path in (STREAM, CHUNK):
        created = documents.request(
            "PATCH", path, ADMIN, {"fields": {"status": {"stringValue": "done"}}}
        )
        assert created.status_code == 200, created.text
    return documents


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("path", [STREAM, CHUNK])
def test_client_cannot_read_stream_documents(
    documents: Documents, client: str, path: str
) -> None:
    response = documents.request("GET", path, CLIENTS[client])

    assert response.status_code == 403
    assert response.json()["error"]["status"] == "PERMISSION_DENIED"


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PATCH", STREAM),
        ("PATCH", f"{DEFAULT_COLLECTION}/new-stream"),
        ("PATCH", CHUNK),
        ("DELETE", STREAM),
        ("DELETE", CHUNK),
    ],
)
def test_client_cannot_write_stream_documents(
    documents: Documents, client: str, method: str, path: str
) -> None:
    body = {"fields": {"status": {"stringValue": "running"}}}

    response = documents.request(method, path, CLIENTS[client], body)

    assert response.status_code == 403
    assert documents.request("GET", STREAM, ADMIN).json()["fields"]["status"] == {
        "stringValue": "done"
    }


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("collection_id", [DEFAULT_COLLECTION, "chunks"])
def test_client_cannot_query_stream_documents(
    documents: Documents, client: str, collection_id: str
) -> None:
    response = documents.query(collection_id, CLIENTS[client])

    assert response.status_code == 403


def test_client_cannot_list_stream_collection(documents: Documents) -> None:
    response = documents.request("GET", DEFAULT_COLLECTION, CLIENTS["signed-in user"])

    assert response.status_code == 403


def test_admin_reads_stream_documents(documents: Documents) -> None:
    response = documents.request("GET", CHUNK, ADMIN)

    assert response.status_code == 200


def test_rules_emulator_honours_id_tokens(emulator: Emulator) -> None:
    """The denials above come from the rules, not from rejected tokens."""
    project = "demo-rules-control"
    _load_rules(
        emulator,
        project,
        "rules_version = '2';\n"
        "service cloud.firestore { match /databases/{db}/documents {\n"
        "  match /notes/{id} { allow read: if request.auth.uid == 'alice'; }\n"
        "} }\n",
    )
    control = Documents(emulator, project)
    control.request("PATCH", "notes/a", ADMIN, {"fields": {}})
    alice = {"Authorization": f"Bearer {_id_token('alice', project)}"}
    bob = {"Authorization": f"Bearer {_id_token('bob', project)}"}

    assert control.request("GET", "notes/a", alice).status_code == 200
    assert control.request("GET", "notes/a", bob).status_code == 403
    assert control.request("GET", "notes/a", {}).status_code == 403


def test_rules_file_compiles(emulator: Emulator) -> None:
    response = httpx.put(
        f"http://{emulator.address}/emulator/v1/projects/demo-compile:securityRules",
        json={"rules": {"files": [{"name": "x", "content": RULES.read_text()}]}},
    )

    assert response.status_code == 200, response.text
