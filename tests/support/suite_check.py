"""Checks run inside `firebase emulators:exec`, against the emulated project.

    python tests/support/suite_check.py REPORT.json

firebase-tools sets FIRESTORE_EMULATOR_HOST and GCLOUD_PROJECT for this
script; SUITE_FUNCTIONS_URL names the Functions emulator's base URL. The
script streams a countdown through the Functions emulator, drops the
connection, reconnects, and writes a stream record that the trigger must
finalize. It records what it saw in REPORT.json for the test to assert on.
"""

from __future__ import annotations

import datetime
import json
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "functions")]

from google.auth.credentials import AnonymousCredentials  # noqa: E402
from google.cloud import firestore  # noqa: E402

from durable_streams import record as fields  # noqa: E402
from durable_streams.config import DEFAULT_COLLECTION  # noqa: E402
from durable_streams.record import Lease, new_record  # noqa: E402
from support.sse import stream  # noqa: E402

WAIT_SECONDS = 60.0


def stream_and_reconnect(url: str) -> dict[str, Any]:
    first = stream(url, 5, max_frames=2)
    resumed = stream(url, stream_id=first.stream_id)
    return {
        "stream_id": first.stream_id,
        "first_status": first.status_code,
        "first_frames": first.frames,
        "resumed_status": resumed.status_code,
        "resumed_stream_id": resumed.stream_id,
        "resumed_frames": resumed.frames,
    }


def stored_expiries(record: firestore.DocumentReference) -> dict[str, Any]:
    snapshot = record.get()
    chunks = record.collection(fields.CHUNKS).stream()
    return {
        "ended_at": snapshot.get(fields.ENDED_AT).isoformat(),
        "ttl_seconds": snapshot.get(fields.TTL_SECONDS),
        "record": snapshot.get(fields.EXPIRES_AT).isoformat(),
        "chunks": [chunk.get(fields.EXPIRES_AT).isoformat() for chunk in chunks],
    }


def end_stream_without_trigger_fields(db: firestore.Client) -> dict[str, Any]:
    """Write an ended stream whose documents still have provisional expiries,
    and wait until the trigger has given them the final one."""
    record = db.collection(DEFAULT_COLLECTION).document(secrets.token_urlsafe(16))
    now = datetime.datetime.now(datetime.UTC)
    lease = Lease("suite-check", 1, now)
    created = new_record(
        flow="countdown",
        input_json="3",
        owner=None,
        lease=lease,
        now=now,
        ttl_seconds=90.0,
    )
    record.create({**created, fields.TAIL_START: 1, fields.COUNT: 1})
    record.collection(fields.CHUNKS).document(fields.segment_id(0)).create(
        {
            fields.FIRST: 0,
            fields.CHUNK_TEXTS: ['"only"'],
            fields.EXPIRES_AT: now + datetime.timedelta(hours=24),
        }
    )
    record.update({fields.STATUS: "cancelled", fields.ENDED_AT: now})
    final = (now + datetime.timedelta(seconds=90)).isoformat()

    deadline = time.monotonic() + WAIT_SECONDS
    seen = stored_expiries(record)
    while time.monotonic() < deadline and seen["chunks"] != [final]:
        time.sleep(0.2)
        seen = stored_expiries(record)
    return {"stream_id": record.id, "expected": final, **seen}


def main() -> int:
    report_path = Path(sys.argv[1])
    base_url = os.environ["SUITE_FUNCTIONS_URL"]
    project = os.environ["GCLOUD_PROJECT"]
    db = firestore.Client(project=project, credentials=AnonymousCredentials())

    countdown = stream_and_reconnect(f"{base_url}/{project}/us-central1/countdown")
    record = db.collection(DEFAULT_COLLECTION).document(countdown["stream_id"])
    report = {
        "emulator_host": os.environ.get("FIRESTORE_EMULATOR_HOST"),
        "countdown": countdown,
        "countdown_expiries": stored_expiries(record),
        "trigger": end_stream_without_trigger_fields(db),
    }
    report_path.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
