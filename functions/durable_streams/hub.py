"""Followers of streams on this instance, with one listener per stream.

Every reader and every local producer of a stream holds a `Subscription`. The
first subscription of a stream starts one Firestore listener on its record;
the last one to close stops it, however many readers came and went. Readers
wait on the latest known state; a local producer also pushes each state it
commits, so readers on its instance see a chunk as soon as it is committed
without waiting for the listener.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from google.cloud.firestore_v1.watch import Watch

from .record import StreamState
from .store import StreamStore, is_transient

logger = logging.getLogger(__name__)

StateCallback = Callable[[StreamState | None], None]

MIN_REFRESH_INTERVAL = 2.0
"""Seconds between two reads of one record by `refresh`, however many
readers ask."""


class _Entry:
    """The latest known state of one stream, shared by its subscriptions."""

    def __init__(self, stream_id: str) -> None:
        self.stream_id = stream_id
        self.condition = threading.Condition()
        self.state: StreamState | None = None
        self.known = False
        self.version = 0
        self.refs = 0
        self.watch: Watch | None = None
        self.last_listener_event = time.monotonic()
        self.last_refresh = -float("inf")
        self.callbacks: list[StateCallback] = []
        self.recovery_lock = threading.Lock()
        self.last_recovery = -float("inf")

    def accept(self, state: StreamState | None, *, force: bool = False) -> bool:
        """Store a state if it is newer than the known one; tell whether it was."""
        with self.condition:
            if not self._is_news(state, force):
                return False
            self.state = state
            self.known = True
            self.version += 1
            self.condition.notify_all()
            callbacks = list(self.callbacks)

        for callback in callbacks:
            callback(state)
        return True

    def _is_news(self, state: StreamState | None, force: bool) -> bool:
        if force or not self.known:
            return True
        if state is None:
            return self.state is not None
        if self.state is None:
            return False
        return state.update_time > self.state.update_time


class Subscription:
    """One reader's or producer's hold on a stream's shared state."""

    def __init__(
        self, hub: StreamHub, entry: _Entry, callback: StateCallback | None
    ) -> None:
        self._hub = hub
        self._entry = entry
        self._callback = callback
        self._closed = False
        self.stream_id = entry.stream_id

    @property
    def state(self) -> StreamState | None:
        return self._entry.state

    @property
    def version(self) -> int:
        return self._entry.version

    @property
    def recovery_lock(self) -> threading.Lock:
        return self._entry.recovery_lock

    def claim_recovery(self, min_interval: float) -> bool:
        """Tell whether this reader may try to recover the stream now.

        Call it holding `recovery_lock`. It returns False when an attempt
        started on this instance less than `min_interval` seconds ago, so the
        readers of a dead stream read its record once per interval between
        them, however many they are.
        """
        now = time.monotonic()
        if now - self._entry.last_recovery < min_interval:
            return False
        self._entry.last_recovery = now
        return True

    @property
    def listener_idle(self) -> float:
        """Seconds since the listener last delivered a snapshot."""
        return time.monotonic() - self._entry.last_listener_event

    def wait(self, version: int, timeout: float) -> bool:
        """Wait until the state moves past `version`; tell whether it did."""
        with self._entry.condition:
            return self._entry.condition.wait_for(
                lambda: self._entry.version != version, timeout=max(timeout, 0.0)
            )

    def refresh(self) -> None:
        """Read the record now, and restart a listener that missed a change."""
        self._hub.refresh(self._entry)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._hub.release(self._entry, self._callback)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class StreamHub:
    """Subscriptions to the streams of one collection on this instance."""

    def __init__(
        self, store: StreamStore, *, first_snapshot_timeout: float = 10.0
    ) -> None:
        self._store = store
        self._first_snapshot_timeout = first_snapshot_timeout
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def subscribe(
        self,
        stream_id: str,
        *,
        initial: StreamState | None = None,
        callback: StateCallback | None = None,
    ) -> Subscription:
        """Subscribe to a stream; its state is known when this returns.

        `initial` is a state the caller has just read or written, which saves
        waiting for the listener's first snapshot. `callback` is called with
        every newer state.
        """
        with self._lock:
            entry = self._entries.get(stream_id)
            if entry is None:
                entry = self._entries[stream_id] = _Entry(stream_id)
            entry.refs += 1
            if callback is not None:
                entry.callbacks.append(callback)
            if entry.watch is None:
                entry.watch = self._start_listener(entry)

        subscription = Subscription(self, entry, callback)
        try:
            if initial is not None:
                entry.accept(initial)
            elif not entry.known:
                self._await_first_state(entry)
        except BaseException:
            subscription.close()
            raise
        return subscription

    def publish(self, state: StreamState, *, force: bool = False) -> None:
        """Share a state this instance wrote or has just read with local readers.

        A state older than the known one is ignored unless `force` is set.
        """
        with self._lock:
            entry = self._entries.get(state.stream_id)
        if entry is not None:
            entry.accept(state, force=force)

    def publish_gone(self, stream_id: str) -> None:
        """Tell local readers that the stream's record no longer exists."""
        with self._lock:
            entry = self._entries.get(stream_id)
        if entry is not None:
            entry.accept(None)

    def interrupt(self) -> None:
        """Wake every local reader, so that it looks at its stream again."""
        with self._lock:
            entries = list(self._entries.values())
        for entry in entries:
            with entry.condition:
                entry.version += 1
                entry.condition.notify_all()

    def refresh(self, entry: _Entry) -> None:
        now = time.monotonic()
        with entry.condition:
            if now - entry.last_refresh < MIN_REFRESH_INTERVAL:
                return
            entry.last_refresh = now

        try:
            state = self._store.read_state(entry.stream_id)
        except Exception as error:
            if not is_transient(error):
                raise
            logger.warning(
                "Reading stream record failed: %s",
                error,
                extra={"stream_id": entry.stream_id},
            )
            return

        missed = entry.accept(state)
        watch = entry.watch
        if missed or watch is None or not watch.is_active:
            logger.warning(
                "Listener of stream record went quiet; restarting it",
                extra={"stream_id": entry.stream_id},
            )
            self._restart_listener(entry)

    def release(self, entry: _Entry, callback: StateCallback | None) -> None:
        with self._lock:
            entry.refs -= 1
            if callback is not None:
                entry.callbacks.remove(callback)
            watch = None
            if entry.refs == 0:
                watch, entry.watch = entry.watch, None
                del self._entries[entry.stream_id]
        if watch is not None:
            watch.unsubscribe()

    @property
    def listener_count(self) -> int:
        """Number of Firestore listeners open on this instance."""
        with self._lock:
            return sum(1 for entry in self._entries.values() if entry.watch is not None)

    def _start_listener(self, entry: _Entry) -> Watch:
        def on_state(state: StreamState | None) -> None:
            entry.last_listener_event = time.monotonic()
            entry.accept(state)

        return self._store.listen(entry.stream_id, on_state)

    def _restart_listener(self, entry: _Entry) -> None:
        with self._lock:
            if entry.refs == 0:
                return
            old, entry.watch = entry.watch, self._start_listener(entry)
        if old is not None:
            old.unsubscribe()

    def _await_first_state(self, entry: _Entry) -> None:
        with entry.condition:
            entry.condition.wait_for(
                lambda: entry.known, timeout=self._first_snapshot_timeout
            )
            if entry.known:
                return

        logger.warning(
            "Listener gave no first snapshot in %.0f s; reading the record",
            self._first_snapshot_timeout,
            extra={"stream_id": entry.stream_id},
        )
        entry.accept(self._store.read_state(entry.stream_id))
