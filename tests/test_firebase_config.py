"""firebase.json, firestore.indexes.json and the functions firebase-tools deploys."""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from google.cloud import firestore

from durable_streams.config import DEFAULT_COLLECTION
from durable_streams.store import LEASE_END
from support.servers import FUNCTIONS, ROOT, Server, free_port
from support.sse import stream

CONFIG = json.loads((ROOT / "firebase.json").read_text())
INDEXES = json.loads((ROOT / "firestore.indexes.json").read_text())
FIREBASE_TOOLS = ROOT / "node_modules" / "firebase-tools"


def _overrides(**match: Any) -> list[dict[str, Any]]:
    return [
        override
        for override in INDEXES["fieldOverrides"]
        if all(override.get(key) == value for key, value in match.items())
    ]


def _ttl_groups() -> set[str]:
    return {override["collectionGroup"] for override in _overrides(ttl=True)}


def _exempt_fields(group: str) -> set[str]:
    return {
        override["fieldPath"]
        for override in _overrides(collectionGroup=group)
        if override["indexes"] == []
    }


def test_functions_config_names_python311_source() -> None:
    [functions] = CONFIG["functions"]

    assert functions["runtime"] == "python311"
    assert functions["source"] == "functions"
    assert "venv" in functions["ignore"]
    assert (ROOT / functions["source"] / "main.py").is_file()
    assert (ROOT / functions["source"] / "requirements.txt").is_file()


def test_firestore_config_names_rules_and_indexes() -> None:
    assert CONFIG["firestore"] == {
        "rules": "firestore.rules",
        "indexes": "firestore.indexes.json",
    }
    assert (ROOT / "firestore.rules").is_file()
    assert (ROOT / "firestore.indexes.json").is_file()


def test_emulator_ports_avoid_scripts_run() -> None:
    emulators = CONFIG["emulators"]
    ports = [emulators[name]["port"] for name in ("hub", "logging", "ui")]
    ports += [emulators[name]["port"] for name in ("auth", "functions", "firestore")]
    ports.append(emulators["firestore"]["websocketPort"])
    run_script = (ROOT / "scripts" / "run").read_text()
    run_ports = {int(port) for port in re.findall(r"PORT:-(\d+)", run_script)}

    assert run_ports == {8080, 8081, 8180}
    assert len(set(ports)) == len(ports)
    assert not set(ports) & run_ports


def test_emulator_suite_runs_firestore_functions_auth_and_ui() -> None:
    emulators = CONFIG["emulators"]

    assert emulators["ui"]["enabled"] is True
    for name in ("firestore", "functions", "auth", "ui"):
        assert emulators[name]["host"] == "127.0.0.1"


def _validate_with_firebase_tools(
    spec: dict[str, Any],
) -> subprocess.CompletedProcess[str]:
    """Run firebase-tools' own check of an indexes file, as `firebase deploy` does."""
    script = (
        "const {FirestoreApi} = require(process.argv[1]);"
        "const api = new FirestoreApi();"
        "api.validateSpec(api.upgradeOldSpec(JSON.parse(process.argv[2])));"
    )
    api = FIREBASE_TOOLS / "lib" / "firestore" / "api.js"
    return subprocess.run(
        ["node", "-e", script, str(api), json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_indexes_file_passes_firebase_tools_validation() -> None:
    checked = _validate_with_firebase_tools(INDEXES)

    assert checked.returncode == 0, checked.stderr


def test_firebase_tools_validation_rejects_broken_override() -> None:
    broken = {"indexes": [], "fieldOverrides": [{"collectionGroup": "x", "ttl": True}]}

    checked = _validate_with_firebase_tools(broken)

    assert checked.returncode != 0
    assert "fieldPath" in checked.stderr


def test_ttl_overrides_exempt_expires_at_from_indexing() -> None:
    for override in _overrides(ttl=True):
        assert override["fieldPath"] == "expiresAt"
        assert override["indexes"] == []


def test_only_the_sweep_query_has_a_composite_index() -> None:
    # Chunk documents and records are read by id; only the sweep of dead
    # producers queries, on the status and the end of the lease.
    assert INDEXES["indexes"] == [
        {
            "collectionGroup": DEFAULT_COLLECTION,
            "queryScope": "COLLECTION",
            "fields": [
                {"fieldPath": "status", "order": "ASCENDING"},
                {"fieldPath": LEASE_END, "order": "ASCENDING"},
            ],
        }
    ]


@pytest.fixture
def written_documents(
    server: Server, db: firestore.Client, collection: str
) -> dict[str, list[dict[str, Any]]]:
    """The documents that real streams write, by collection group: one that
    ends with chunk documents, and one that fails.

    The stream collection is named after the default collection, which is
    the name firestore.indexes.json configures.
    """
    done = stream(server.url("blast"), {"count": 5, "size": 20_000})
    failed = stream(server.url("fail"), {"after": 1})
    assert done.final == {"result": {"sent": 5}}
    assert failed.final is not None
    assert "error" in failed.final

    written: dict[str, list[dict[str, Any]]] = {DEFAULT_COLLECTION: []}
    for result in (done, failed):
        record = db.collection(collection).document(result.stream_id or "")
        written[DEFAULT_COLLECTION].append(record.get().to_dict() or {})
        for subcollection in record.collections():
            written.setdefault(subcollection.id, []).extend(
                snapshot.to_dict() or {} for snapshot in subcollection.stream()
            )
    return written


def test_every_stream_collection_group_has_ttl(
    written_documents: dict[str, list[dict[str, Any]]],
) -> None:
    assert set(written_documents) == {DEFAULT_COLLECTION, "chunks"}
    assert _ttl_groups() == set(written_documents)
    for group, documents in written_documents.items():
        for document in documents:
            assert isinstance(document["expiresAt"], datetime.datetime), group


def test_exemptions_name_written_fields(
    written_documents: dict[str, list[dict[str, Any]]],
) -> None:
    for group, documents in written_documents.items():
        written = {name for document in documents for name in document}
        assert _exempt_fields(group) <= written, group


def _is_sequential_or_large(value: Any) -> bool:
    """Tell whether a value is a timestamp, a counter, a list, or a map that
    contains one: values that are never queried and costly to index."""
    if isinstance(value, datetime.datetime | list):
        return True
    if isinstance(value, int) and not isinstance(value, bool):
        return True
    if isinstance(value, dict):
        return any(_is_sequential_or_large(item) for item in value.values())
    return False


def test_sequential_and_array_fields_are_exempt(
    written_documents: dict[str, list[dict[str, Any]]],
) -> None:
    for group, documents in written_documents.items():
        exempt = _exempt_fields(group)
        for document in documents:
            for name, value in document.items():
                if _is_sequential_or_large(value):
                    assert name in exempt, f"{group}.{name} is indexed"


@pytest.fixture(scope="module")
def discovered_functions(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Any]]:
    """The functions firebase-tools would deploy, from the SDK's admin server,
    which firebase-tools runs in the functions directory to find them."""
    import firebase_functions

    port = free_port()
    serving = Path(firebase_functions.__file__).parent / "private" / "serving.py"
    log = (tmp_path_factory.mktemp("discovery") / "admin.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, str(serving)],
        cwd=FUNCTIONS,
        env={**os.environ, "ADMIN_PORT": str(port)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield yaml.safe_load(_get_manifest(port))["endpoints"]
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def _get_manifest(port: int) -> str:
    deadline = time.monotonic() + 60
    while True:
        try:
            response = httpx.get(f"http://127.0.0.1:{port}/__/functions.yaml")
            response.raise_for_status()
            return response.text
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_deploy_discovers_countdown_options(
    discovered_functions: dict[str, Any],
) -> None:
    countdown = discovered_functions["countdown"]

    assert countdown["httpsTrigger"] == {}
    assert countdown["timeoutSeconds"] == 3600
    assert countdown["concurrency"] == 250
    assert countdown["cpu"] == 1
    assert countdown["availableMemoryMb"] == 512


def test_deploy_discovers_finalize_trigger(
    discovered_functions: dict[str, Any],
) -> None:
    trigger = discovered_functions["finalize_stream"]["eventTrigger"]

    assert trigger["eventType"] == "google.cloud.firestore.document.v1.written"
    assert trigger["eventFilters"] == {
        "database": "(default)",
        "namespace": "(default)",
    }
    assert trigger["eventFilterPathPatterns"] == {
        "document": f"{DEFAULT_COLLECTION}/{{streamId}}"
    }
    assert discovered_functions["finalize_stream"]["entryPoint"] == "finalize_stream"


def test_deploy_discovers_sweep_schedule(
    discovered_functions: dict[str, Any],
) -> None:
    sweep = discovered_functions["sweep_streams"]

    assert sweep["scheduleTrigger"]["schedule"] == "every 1 minutes"
    assert sweep["entryPoint"] == "sweep_streams"


def test_threads_match_countdown_concurrency(
    discovered_functions: dict[str, Any],
) -> None:
    dotenv = (FUNCTIONS / ".env").read_text()
    [threads] = re.findall(r"^THREADS=(\d+)$", dotenv, flags=re.MULTILINE)

    assert int(threads) == discovered_functions["countdown"]["concurrency"]
