"""Firestore clients of emulators other than the session's."""

from __future__ import annotations

import os

from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore

from firestore_emulator import Emulator


def client_for(emulator: Emulator, project: str | None = None) -> firestore.Client:
    """Return a client of `emulator`, whatever FIRESTORE_EMULATOR_HOST names.

    The client reads the variable once, when it is created. `project`
    defaults to the emulator's.
    """
    previous = os.environ.get("FIRESTORE_EMULATOR_HOST")
    os.environ["FIRESTORE_EMULATOR_HOST"] = emulator.address
    try:
        return firestore.Client(
            project=project or emulator.project, credentials=AnonymousCredentials()
        )
    finally:
        if previous is None:
            del os.environ["FIRESTORE_EMULATOR_HOST"]
        else:
            os.environ["FIRESTORE_EMULATOR_HOST"] = previous
