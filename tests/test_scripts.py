"""The scripts a user runs: purge-expired, set-ttl and the emulator suite set-up."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest
from google.cloud import firestore

from emulator_suite import (
    CONFIG,
    derived_config,
    find_java,
    java_major_version,
    parse_java_major,
    write_wrapper_jar,
)
from firestore_emulator import MAIN_CLASS, Emulator
from purge_expired import ttl_policies
from support.clients import client_for
from support.servers import ROOT, free_port

PURGE_PROJECT = "demo-purge-test"


@pytest.fixture
def purge_db(emulator: Emulator) -> firestore.Client:
    """A client of a project of its own, since purging covers whole groups."""
    return client_for(emulator, PURGE_PROJECT)


def _purge(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "purge_expired.py"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_purge_deletes_only_expired_stream_documents(
    emulator: Emulator, purge_db: firestore.Client
) -> None:
    now = datetime.datetime.now(datetime.UTC)
    past = {"expiresAt": now - datetime.timedelta(seconds=1)}
    future = {"expiresAt": now + datetime.timedelta(hours=1)}
    expired = purge_db.document("genkit-streams/expired")
    expired.set(past)
    expired.collection("chunks").document("0000000001").set(past)
    unexpired = purge_db.document("genkit-streams/unexpired")
    unexpired.set(future)
    unexpired.collection("chunks").document("0000000001").set(future)
    unrelated = purge_db.document("notes/expired")
    unrelated.set(past)

    purged = _purge(
        {**os.environ, "FIRESTORE_EMULATOR_HOST": emulator.address},
        "--project",
        PURGE_PROJECT,
    )

    assert purged.returncode == 0, purged.stderr
    assert "genkit-streams: deleted 1 expired documents" in purged.stdout
    assert "chunks: deleted 1 expired documents" in purged.stdout
    assert not expired.get().exists
    assert not expired.collection("chunks").document("0000000001").get().exists
    assert unexpired.get().exists
    assert unexpired.collection("chunks").document("0000000001").get().exists
    assert unrelated.get().exists


def test_purge_rejects_running_without_emulator() -> None:
    env = {
        name: value
        for name, value in os.environ.items()
        if name != "FIRESTORE_EMULATOR_HOST"
    }

    purged = _purge(env)

    assert purged.returncode == 2
    assert "never touches a real database" in purged.stderr


def test_purge_stops_when_no_emulator_answers() -> None:
    host = f"127.0.0.1:{free_port()}"

    purged = _purge({**os.environ, "FIRESTORE_EMULATOR_HOST": host})

    assert purged.returncode == 2
    assert f"no Firestore emulator answers at {host}" in purged.stderr


def test_purge_covers_every_ttl_policy() -> None:
    indexes = json.loads((ROOT / "firestore.indexes.json").read_text())
    expected = {
        (override["collectionGroup"], override["fieldPath"])
        for override in indexes["fieldOverrides"]
        if override.get("ttl")
    }

    assert set(ttl_policies()) == expected
    assert len(expected) == 2


def test_set_ttl_dry_run_names_every_group() -> None:
    completed = subprocess.run(
        [str(ROOT / "scripts" / "set-ttl"), "my-project", "--dry-run"],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.splitlines() == [
        f"gcloud firestore fields ttls update {field} --collection-group={group} "
        "--enable-ttl --project=my-project --async"
        for group, field in ttl_policies()
    ]


def test_set_ttl_requires_project() -> None:
    completed = subprocess.run(
        [str(ROOT / "scripts" / "set-ttl")], capture_output=True, text=True, timeout=60
    )

    assert completed.returncode != 0
    assert "usage: scripts/set-ttl PROJECT_ID" in completed.stderr


def test_derived_config_changes_only_ports_and_ui(tmp_path: Path) -> None:
    original = json.loads(CONFIG.read_text())

    path = derived_config(
        tmp_path, ports={"firestore": 1234, "websocket": 1235}, ui=False
    )
    derived = json.loads(path.read_text())

    assert derived["emulators"]["firestore"]["port"] == 1234
    assert derived["emulators"]["firestore"]["websocketPort"] == 1235
    assert derived["emulators"]["ui"]["enabled"] is False
    derived["emulators"]["firestore"] = original["emulators"]["firestore"]
    derived["emulators"]["ui"] = original["emulators"]["ui"]
    assert derived == original
    for name in ("functions", "firestore.rules", "firestore.indexes.json"):
        assert (tmp_path / name).resolve() == ROOT / name


def test_wrapper_jar_names_main_class_and_real_jar(tmp_path: Path) -> None:
    real = tmp_path / "real.jar"
    real.write_bytes(b"")

    jar = write_wrapper_jar(tmp_path / "wrapper.jar", real)

    with zipfile.ZipFile(jar) as archive:
        manifest = archive.read("META-INF/MANIFEST.MF").decode()
    assert f"Main-Class: {MAIN_CLASS}\r\n" in manifest
    assert f"Class-Path: {real.as_uri()}\r\n" in manifest


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('openjdk version "25.0.2" 2026-01-20', 25),
        ('java version "1.8.0_402"', 8),
        ('openjdk version "21" 2023-09-19', 21),
        ("Error: could not open `jvm.cfg'", None),
    ],
)
def test_java_version_output_parses(output: str, expected: int | None) -> None:
    assert parse_java_major(output) == expected


def test_setup_java_provides_java_21() -> None:
    java = find_java(install=False)

    assert (java_major_version(java) or 0) >= 21


def test_java_major_version_of_missing_binary(tmp_path: Path) -> None:
    assert java_major_version(str(tmp_path / "no-java")) is None


def _answers_http(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False
    return True


@pytest.mark.slow
def test_started_emulator_survives_ctrl_c() -> None:
    """A Ctrl+C that stops scripts/run leaves the emulator and its streams."""
    port = free_port()
    script = ROOT / "scripts" / "firestore_emulator.py"
    # A shell in a session of its own plays the terminal: SIGINT to its
    # process group is what Ctrl+C sends to the foreground job.
    with subprocess.Popen(
        ["bash", "-c", f"'{sys.executable}' '{script}' start --port {port}; sleep 60"],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as terminal:
        try:
            assert terminal.stdout is not None
            started = terminal.stdout.readline()
            assert "Firestore emulator running" in started
            emulator_pid = int(
                (ROOT / ".local" / f"firestore-emulator-{port}.pid").read_text()
            )
            assert os.getpgid(emulator_pid) != terminal.pid

            os.killpg(terminal.pid, signal.SIGINT)
            terminal.wait(timeout=10)
            time.sleep(2)

            assert _answers_http(port)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(terminal.pid, signal.SIGKILL)
            stopped = subprocess.run(
                [sys.executable, str(script), "stop", "--port", str(port)],
                capture_output=True,
                text=True,
                timeout=30,
            )
    assert "Stopped the Firestore emulator" in stopped.stdout
