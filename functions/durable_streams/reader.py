"""Following a stream: its stored chunks from any position, then live ones,
then its end."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from .config import StreamOptions
from .hub import Subscription
from .record import Status, StreamState
from .recovery import Recovery
from .store import StreamStore, WriteConflict

QUIET_LISTENER_RENEWALS = 1.5
"""A listener silent for this many lease renewal intervals of a running
stream is checked by reading the record."""

GONE_MESSAGE = "The stream no longer exists."
SHUTDOWN_MESSAGE = (
    "This server is shutting down; reconnect with the stream id to continue."
)


@dataclass(frozen=True)
class ChunkRun:
    """Consecutive chunks, as JSON text, starting at position `first`."""

    first: int
    texts: Sequence[str]


@dataclass(frozen=True)
class StreamEnd:
    """The end of a stream: its output or its error.

    `position` is the stream's chunk count when the end is the one stored in
    the record, and None when a follower gave up on a stream that may still
    run (a timeout, or a record that vanished).
    """

    result_json: str | None = None
    error_status: str | None = None
    error_message: str | None = None
    position: int | None = None

    @classmethod
    def failure(cls, status: str, message: str) -> StreamEnd:
        return cls(error_status=status, error_message=message)

    @classmethod
    def of(cls, state: StreamState) -> StreamEnd:
        if state.status is Status.DONE:
            return cls(result_json=state.result_json or "null", position=state.count)
        return cls(
            error_status=state.error_status or "UNKNOWN",
            error_message=state.error_message or "",
            position=state.count,
        )


@dataclass(frozen=True)
class Idle:
    """A pause with nothing new, yielded so that a caller can send a keep-alive."""


StreamEvent = ChunkRun | StreamEnd | Idle

IDLE = Idle()


def follow(
    store: StreamStore,
    recovery: Recovery,
    subscription: Subscription,
    start: int,
    options: StreamOptions,
) -> Iterator[StreamEvent]:
    """Yield the chunks from position `start` on, live, then the end.

    A position past the chunks stored so far waits for them. While it
    waits, `IDLE` comes at least every `options.heartbeat` seconds.

    Gives up with DEADLINE_EXCEEDED after `options.timeout` without any
    change of the record. A healthy producer renews its lease every third
    of `options.lease`, so this happens only when the stream is stuck. A
    producer that misses its lease is noticed within `LEASE_GRACE` of the
    lease's end and the stream is recovered (see `Recovery.recover`).
    """
    cursor = start
    last_change = time.monotonic()
    check_every = min(options.renew_interval, options.timeout)

    while True:
        version = subscription.version
        state = subscription.state
        if state is None:
            yield StreamEnd.failure("NOT_FOUND", GONE_MESSAGE)
            return

        if cursor < state.tail_start:
            try:
                for texts in store.read_chunks(
                    state.stream_id, cursor, state.tail_start
                ):
                    yield ChunkRun(cursor, texts)
                    cursor += len(texts)
            except WriteConflict:
                yield StreamEnd.failure("NOT_FOUND", GONE_MESSAGE)
                return
            continue

        offset = cursor - state.tail_start
        if offset < len(state.tail):
            yield ChunkRun(cursor, state.tail[offset:])
        cursor = max(cursor, state.count)

        if state.ended:
            yield StreamEnd.of(state)
            return

        if recovery.stopping:
            # The response would be cut without a final frame when the
            # process exits; the client reconnects to another instance.
            yield StreamEnd.failure("UNAVAILABLE", SHUTDOWN_MESSAGE)
            return

        wait = recovery.check_producer(subscription, state, check_every)
        changed = subscription.wait(version, min(wait, options.heartbeat))
        yield IDLE
        if changed:
            last_change = time.monotonic()
            continue

        if time.monotonic() - last_change >= options.timeout:
            yield StreamEnd.failure(
                "DEADLINE_EXCEEDED",
                f"The stream showed no sign of life for {options.timeout:.0f} s.",
            )
            return

        if subscription.listener_idle >= QUIET_LISTENER_RENEWALS * check_every:
            # A running producer writes at least every `check_every`, so
            # the listener missed something. Seen with listeners that stop
            # silently, and with the emulator: about 1 listener start in
            # 100 logs "ListenResponse: Wire format was corrupt" from
            # google-cloud-firestore 2.34.1, and the change is lost.
            subscription.refresh()
