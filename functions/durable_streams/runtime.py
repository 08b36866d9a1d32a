"""Process-wide state: the Firestore client, this instance's id, and one
stream manager per collection."""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable, Sequence

from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore

from .hub import StreamHub
from .store import StreamStore
from .streams import StreamManager

logger = logging.getLogger(__name__)

EMULATOR_PROJECT = "demo-streams"
_PROJECT_VARIABLES = ("GCLOUD_PROJECT", "GOOGLE_CLOUD_PROJECT", "FIREBASE_PROJECT_ID")

CommitObserver = Callable[[str, Sequence[str]], None]


def project_id() -> str | None:
    """Return the Google Cloud project named by the environment, if any."""
    for variable in _PROJECT_VARIABLES:
        value = os.environ.get(variable)
        if value:
            return value
    return None


def create_client() -> firestore.Client:
    """Create a Firestore client for the emulator or for production.

    With `FIRESTORE_EMULATOR_HOST` set, the client uses anonymous credentials,
    because the Admin SDK asks for real ones even when it talks to the
    emulator.
    """
    if os.environ.get("FIRESTORE_EMULATOR_HOST"):
        project = project_id() or EMULATOR_PROJECT
        return firestore.Client(project=project, credentials=AnonymousCredentials())

    import firebase_admin
    from firebase_admin import firestore as admin_firestore

    if not firebase_admin._apps:
        firebase_admin.initialize_app()
    client: firestore.Client = admin_firestore.client()
    return client


class Runtime:
    """The Firestore client and the stream managers of this process."""

    def __init__(self, client: firestore.Client) -> None:
        self.client = client
        self.instance_id = (
            f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        )
        self.commit_observers: list[CommitObserver] = []
        self._managers: dict[str, StreamManager] = {}
        self._lock = threading.Lock()

    def manager(self, collection: str) -> StreamManager:
        """Return the stream manager of a collection, creating it once."""
        with self._lock:
            manager = self._managers.get(collection)
            if manager is None:
                store = StreamStore(
                    self.client, collection, observers=self.commit_observers
                )
                manager = StreamManager(store, StreamHub(store), self.instance_id)
                self._managers[collection] = manager
                logger.info(
                    "Serving streams of collection %r on instance %s",
                    collection,
                    self.instance_id,
                )
            return manager

    @property
    def listener_count(self) -> int:
        """Number of Firestore listeners this process has open."""
        with self._lock:
            managers = list(self._managers.values())
        return sum(manager.hub.listener_count for manager in managers)


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def get_runtime() -> Runtime:
    """Return the process's runtime, connecting to Firestore on first use."""
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            _runtime = Runtime(create_client())
        return _runtime
