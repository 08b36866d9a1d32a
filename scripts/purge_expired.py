#!/usr/bin/env python3
"""Delete expired stream documents from a Firestore emulator.

The emulator never applies TTL policies, so stream records and chunk
documents whose `expiresAt` has passed stay there until deleted. This script
deletes, in every collection group with a TTL policy in
firestore.indexes.json, each document whose `expiresAt` is not later than
now, which is what Firestore's TTL job does in production. It talks only to
an emulator: without FIRESTORE_EMULATOR_HOST or --host it stops.

    python scripts/purge_expired.py [--host 127.0.0.1:8280] [--project demo-streams]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path

from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore

ROOT = Path(__file__).resolve().parent.parent
INDEXES = ROOT / "firestore.indexes.json"
CONNECT_TIMEOUT = 5.0
"""Seconds to wait for the emulator to respond."""
BATCH_SIZE = 500
"""Documents deleted per batch, Firestore's limit of writes per batch."""


def ttl_policies(indexes_file: Path = INDEXES) -> list[tuple[str, str]]:
    """Return the (collection group, field) pairs with a TTL policy."""
    spec = json.loads(indexes_file.read_text())
    return [
        (override["collectionGroup"], override["fieldPath"])
        for override in spec.get("fieldOverrides", [])
        if override.get("ttl")
    ]


def purge_expired(
    client: firestore.Client,
    policies: Iterable[tuple[str, str]],
    now: datetime.datetime,
) -> dict[str, int]:
    """Delete every document past its TTL field; return the count per group."""
    deleted: dict[str, int] = {}
    for group, field in policies:
        query = (
            client.collection_group(group)
            .where(filter=firestore.FieldFilter(field, "<=", now))
            .select([])
        )
        refs = [snapshot.reference for snapshot in query.stream()]
        for start in range(0, len(refs), BATCH_SIZE):
            batch = client.batch()
            for ref in refs[start : start + BATCH_SIZE]:
                batch.delete(ref)
            batch.commit()
        deleted[group] = len(refs)
    return deleted


def emulator_answers(host: str) -> bool:
    """Return whether an HTTP server responds at `host` (host:port)."""
    try:
        with urllib.request.urlopen(f"http://{host}/", timeout=CONNECT_TIMEOUT):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--host",
        default=os.environ.get("FIRESTORE_EMULATOR_HOST"),
        help="the emulator's host:port (default: FIRESTORE_EMULATOR_HOST)",
    )
    parser.add_argument(
        "--project",
        default=os.environ.get("GCLOUD_PROJECT", "demo-streams"),
        help="project id of the emulated data (default: GCLOUD_PROJECT or "
        "demo-streams)",
    )
    args = parser.parse_args()

    if not args.host:
        print(
            "error: no emulator given; set FIRESTORE_EMULATOR_HOST or pass --host "
            "(firebase.json's Firestore emulator is 127.0.0.1:8280). This script "
            "never touches a real database: TTL policies clean those up.",
            file=sys.stderr,
        )
        return 2

    if not emulator_answers(args.host):
        print(
            f"error: no Firestore emulator answers at {args.host}. Start one "
            "(scripts/run uses 127.0.0.1:8180, scripts/emulators 127.0.0.1:8280) "
            "or name the running one with FIRESTORE_EMULATOR_HOST or --host.",
            file=sys.stderr,
        )
        return 2

    os.environ["FIRESTORE_EMULATOR_HOST"] = args.host
    client = firestore.Client(project=args.project, credentials=AnonymousCredentials())
    now = datetime.datetime.now(datetime.UTC)
    for group, count in purge_expired(client, ttl_policies(), now).items():
        print(f"{group}: deleted {count} expired documents")
    return 0


if __name__ == "__main__":
    sys.exit(main())
