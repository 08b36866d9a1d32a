"""Where newly committed chunks go: the record's tail or chunk documents.

Pure functions, no I/O. The record keeps the newest chunks, up to
`tail_bytes`, so a reader that follows a stream live learns every new chunk
from the one small record it listens to. When the tail would grow past that,
the chunks already in it move into new chunk documents of up to
`segment_bytes`, and the newest chunks start the next tail. A chunk document
is written once and never changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Segment:
    """A run of consecutive chunks stored in one chunk document."""

    first: int
    chunks: tuple[str, ...]

    @property
    def last(self) -> int:
        return self.first + len(self.chunks) - 1


@dataclass(frozen=True)
class Placement:
    """The tail after a write, and the chunk documents the write creates."""

    tail_start: int
    tail: tuple[str, ...]
    segments: tuple[Segment, ...]


def stored_size(text: str) -> int:
    """Return the bytes a string takes in a Firestore document (UTF-8 plus one)."""
    return len(text.encode("utf-8")) + 1


def place_chunks(
    tail_start: int,
    tail: Sequence[str],
    new_chunks: Sequence[str],
    *,
    tail_bytes: int,
    segment_bytes: int,
) -> Placement:
    """Place `new_chunks`, which follow `tail`, in the tail or in segments."""
    combined = [*tail, *new_chunks]
    if sum(map(stored_size, combined)) <= tail_bytes:
        return Placement(tail_start, tuple(combined), ())

    # The old tail always moves out; the newest new chunks that fit stay.
    keep = _newest_that_fit(new_chunks, tail_bytes)
    moved = combined[: len(combined) - keep]
    segments = pack_segments(tail_start, moved, segment_bytes)
    new_tail_start = tail_start + len(moved)
    return Placement(new_tail_start, tuple(combined[len(moved) :]), segments)


def pack_segments(
    first: int, chunks: Sequence[str], segment_bytes: int
) -> tuple[Segment, ...]:
    """Split consecutive chunks into segments of at most `segment_bytes` each.

    A chunk larger than `segment_bytes` gets a segment of its own.
    """
    segments: list[Segment] = []
    run: list[str] = []
    run_bytes = 0

    for text in chunks:
        size = stored_size(text)
        if run and run_bytes + size > segment_bytes:
            segments.append(Segment(first, tuple(run)))
            first += len(run)
            run, run_bytes = [], 0
        run.append(text)
        run_bytes += size

    if run:
        segments.append(Segment(first, tuple(run)))
    return tuple(segments)


def _newest_that_fit(chunks: Sequence[str], budget: int) -> int:
    """Return how many of the last chunks fit together in `budget` bytes."""
    used = 0
    for kept, text in enumerate(reversed(chunks)):
        used += stored_size(text)
        if used > budget:
            return kept
    return len(chunks)
