"""The project's firebase.json run by firebase-tools' `emulators:exec`.

firebase-tools starts the Firestore and Functions emulators, discovers the
functions of functions/main.py with the firebase-functions SDK, serves them
from functions/venv, and wires the Firestore trigger. Inside,
tests/support/suite_check.py streams a countdown through the Functions
emulator, reconnects, and waits for the trigger; this test asserts on its
report and on firebase-tools' output.

firebase.json is copied with free ports and the UI off, since the UI is a
download; everything else stays as the project configures it.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import pytest

from emulator_suite import derived_config, suite_environment
from support.servers import ROOT, free_port

pytestmark = pytest.mark.slow

FIREBASE = ROOT / "node_modules" / ".bin" / "firebase"
CHECK = ROOT / "tests" / "support" / "suite_check.py"
PROJECT = "demo-streams"
TIMEOUT_SECONDS = 600


@dataclass(frozen=True)
class SuiteRun:
    """The output of one `emulators:exec` run and the report of its check."""

    returncode: int
    output: str
    report: dict[str, Any]
    ports: dict[str, int]


@pytest.fixture(scope="module")
def suite_run(tmp_path_factory: pytest.TempPathFactory) -> SuiteRun:
    directory = tmp_path_factory.mktemp("firebase-suite")
    functions_port = free_port()
    ports = {
        "hub": free_port(),
        "logging": free_port(),
        "ui": free_port(),
        "functions": functions_port,
        "firestore": free_port(),
        "websocket": free_port(),
    }
    config = derived_config(directory / "project", ports=ports, ui=False)
    report_path = directory / "report.json"
    env = {
        **os.environ,
        **suite_environment(install=False),
        "COUNTDOWN_TICK_SECONDS": "0.2",
        "SUITE_FUNCTIONS_URL": f"http://127.0.0.1:{functions_port}",
    }
    env.pop("FIRESTORE_EMULATOR_HOST", None)
    command = [
        str(FIREBASE),
        "emulators:exec",
        "--project",
        PROJECT,
        "--config",
        str(config),
        "--only",
        "firestore,functions",
        f"{sys.executable} {CHECK} {report_path}",
    ]

    process = subprocess.Popen(
        command,
        cwd=directory,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=TIMEOUT_SECONDS)
    finally:
        # Function workers that firebase-tools leaves behind are in its
        # process group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    return SuiteRun(process.returncode, output, report, ports)


def _frames(frames: list[dict[str, Any]]) -> list[Any]:
    return [frame["message"]["count"] for frame in frames if "message" in frame]


def test_emulators_exec_runs_the_check(suite_run: SuiteRun) -> None:
    assert suite_run.returncode == 0, suite_run.output[-5000:]
    assert suite_run.report, suite_run.output[-5000:]
    assert "Loaded functions definitions from source: countdown, finalize_stream" in (
        suite_run.output
    )


def test_countdown_streams_through_functions_emulator(suite_run: SuiteRun) -> None:
    countdown = suite_run.report["countdown"]

    assert countdown["first_status"] == 200
    assert countdown["stream_id"]
    assert _frames(countdown["first_frames"]) == [5, 4]


def test_countdown_reconnect_replays_and_finishes(suite_run: SuiteRun) -> None:
    countdown = suite_run.report["countdown"]

    assert countdown["resumed_status"] == 200
    assert countdown["resumed_stream_id"] == countdown["stream_id"]
    assert _frames(countdown["resumed_frames"]) == [5, 4, 3, 2, 1]
    assert countdown["resumed_frames"][-1] == {"result": "Liftoff!"}


def test_countdown_record_expires_one_ttl_after_end(suite_run: SuiteRun) -> None:
    expiries = suite_run.report["countdown_expiries"]
    ended_at = datetime.datetime.fromisoformat(expiries["ended_at"])
    expected = ended_at + datetime.timedelta(seconds=expiries["ttl_seconds"])

    assert datetime.datetime.fromisoformat(expiries["record"]) == expected
    assert expiries["chunks"] == []


def test_trigger_sets_final_expiry_through_emulators(suite_run: SuiteRun) -> None:
    trigger = suite_run.report["trigger"]

    assert trigger["record"] == trigger["expected"]
    assert trigger["chunks"] == [trigger["expected"]]


def test_trigger_logs_through_functions_emulator(suite_run: SuiteRun) -> None:
    stream_id = suite_run.report["trigger"]["stream_id"]
    lines = [
        json.loads(line[line.index("{") :])
        for line in suite_run.output.splitlines()
        if stream_id in line and "Stream documents expire at" in line
    ]

    assert len(lines) == 1
    assert lines[0]["function"] == "finalize_stream"
    assert lines[0]["severity"] == "INFO"
    assert lines[0]["stream_id"] == stream_id


def test_check_used_the_suite_firestore_emulator(suite_run: SuiteRun) -> None:
    firestore_port = suite_run.ports["firestore"]

    assert suite_run.report["emulator_host"] == f"127.0.0.1:{firestore_port}"


def _function_worker_pids() -> set[int]:
    """Return the pids of the functions-framework processes of this checkout."""
    worker = ROOT / "functions" / "venv" / "bin" / "functions-framework"
    listing = subprocess.run(
        ["pgrep", "-f", f"python {worker}"], capture_output=True, text=True
    )
    return {int(pid) for pid in listing.stdout.split()}


def test_emulators_script_stops_function_workers(tmp_path: Any) -> None:
    """firebase-tools leaves its function workers running after emulators:exec;
    scripts/emulators stops them with it."""
    ports = {
        name: free_port()
        for name in ("hub", "logging", "ui", "functions", "firestore", "websocket")
    }
    config = derived_config(tmp_path / "project", ports=ports, ui=False)
    url = f"http://127.0.0.1:{ports['functions']}/{PROJECT}/us-central1/countdown"
    request = (
        "curl -s -X POST -H 'Content-Type: application/json' "
        f"-d '{{\"data\": 2}}' {url}"
    )
    env = {**os.environ, "COUNTDOWN_TICK_SECONDS": "0.1"}
    env.pop("FIRESTORE_EMULATOR_HOST", None)
    before = _function_worker_pids()

    completed = subprocess.run(
        [
            str(ROOT / "scripts" / "emulators"),
            "exec",
            "--config",
            str(config),
            "--only",
            "firestore,functions",
            request,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
    )

    left = _function_worker_pids() - before
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert completed.returncode == 0, completed.stdout[-3000:]
    assert '{"result":"Liftoff!"}' in completed.stdout
    assert not left
