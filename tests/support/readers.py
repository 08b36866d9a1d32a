"""Readers that follow streams in threads of their own, and bounded waits."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from google.cloud import firestore

from support.sse import StreamResult, stream

T = TypeVar("T")


class BackgroundReader:
    """A client that starts or reconnects to a stream and reads it to the end
    in a thread, while the test goes on."""

    def __init__(
        self,
        url: str,
        data: Any = None,
        *,
        stream_id: str | None = None,
        timeout: float = 120.0,
    ) -> None:
        self.started_at = time.monotonic()
        self._error: BaseException | None = None
        self._result: StreamResult | None = None
        self._thread = threading.Thread(
            target=self._read, args=(url, data, stream_id, timeout), daemon=True
        )
        self._thread.start()

    def _read(self, url: str, data: Any, stream_id: str | None, timeout: float) -> None:
        try:
            self._result = stream(url, data, stream_id=stream_id, timeout=timeout)
        except BaseException as error:
            self._error = error

    def result(self, timeout: float = 120.0) -> StreamResult:
        """Wait for the reader to finish and return what it read."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError(f"the reader did not finish in {timeout} s")
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result


def wait_for(probe: Callable[[], T | None], what: str, timeout: float = 60.0) -> T:
    """Call `probe` every 0.1 s until it returns something other than None or
    False; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value is not None and value is not False:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def read_record(
    db: firestore.Client, collection: str, stream_id: str
) -> dict[str, Any] | None:
    """Return the stored fields of a stream record, or None if it is absent."""
    return db.collection(collection).document(stream_id).get().to_dict()


def wait_for_count(
    db: firestore.Client, collection: str, stream_id: str, count: int
) -> dict[str, Any]:
    """Wait until a stream has committed at least `count` chunks."""

    def committed() -> dict[str, Any] | None:
        record = read_record(db, collection, stream_id)
        return record if record and record["count"] >= count else None

    return wait_for(committed, f"{count} committed chunks of {stream_id}")


def wait_for_end(
    db: firestore.Client, collection: str, stream_id: str, timeout: float = 60.0
) -> dict[str, Any]:
    """Wait until a stream record shows that the stream ended; return its
    fields."""

    def ended() -> dict[str, Any] | None:
        record = read_record(db, collection, stream_id)
        return record if record and record["status"] != "running" else None

    return wait_for(ended, f"the end of stream {stream_id}", timeout)
