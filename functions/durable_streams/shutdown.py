"""Noticing that this server process is about to stop.

Cloud Run sends SIGTERM to an instance it stops, and SIGKILL 10 s later.
Under functions-framework, gunicorn's worker process handles SIGTERM itself:
its handler clears the worker's `alive` flag, stops accepting requests, waits
for open responses, and exits. The app is imported before gunicorn installs
that handler, so it cannot install its own. `watch_for_shutdown` instead polls
the flag from a thread, and also registers an `atexit` hook for a process
that exits before the poll comes round (a worker with no open response exits
within milliseconds).
"""

from __future__ import annotations

import atexit
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

POLL_INTERVAL = 0.5
"""Seconds between two looks at the gunicorn worker's `alive` flag."""


def watch_for_shutdown(on_shutdown: Callable[[], None]) -> None:
    """Call `on_shutdown` once this process begins to shut down: when its
    gunicorn worker receives SIGTERM, or else at interpreter exit.

    `on_shutdown` may be called twice and must be idempotent.
    """
    atexit.register(on_shutdown)

    worker = _gunicorn_worker()
    if worker is None:
        return

    def watch() -> None:
        while worker.alive:
            time.sleep(POLL_INTERVAL)
        on_shutdown()

    threading.Thread(target=watch, name="shutdown-watch", daemon=True).start()


def _gunicorn_worker() -> Any | None:
    """Return the gunicorn worker running this process, if any: the owner of
    the SIGTERM handler that gunicorn installs in its workers."""
    try:
        from gunicorn.workers.base import Worker
    except ImportError:
        return None

    handler = signal.getsignal(signal.SIGTERM)
    worker = getattr(handler, "__self__", None)
    return worker if isinstance(worker, Worker) else None
