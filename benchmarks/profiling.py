"""Sampling profiles of our servers with py-spy, summarized as text.

py-spy samples the server's worker process from outside, 100 times a second
by default, without pausing it (`--nonblocking`). Each sample is the stack of
the thread that holds the GIL (`--gil`), so the summary shows where the
process spends CPU time in Python, not where its threads wait.
"""

from __future__ import annotations

import collections
import contextlib
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from .servers import ServerProcess

PY_SPY = Path(sys.executable).parent / "py-spy"


@contextlib.contextmanager
def recording(server: ServerProcess, output: Path, rate: int = 100) -> Iterator[None]:
    """Record a py-spy profile of the server's worker while the block runs."""
    command = [
        str(PY_SPY),
        "record",
        "--pid",
        str(server.worker_pid()),
        "--rate",
        str(rate),
        "--format",
        "raw",
        "--nonblocking",
        "--gil",
        "--output",
        str(output),
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        yield
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
        if output.exists():
            output.with_suffix(".txt").write_text(summarize(output))


def summarize(raw: Path, top: int = 30) -> str:
    """Return the functions with the most samples, on their own and in all."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(frame) for frame in stack.split(";")]
        samples += count
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count

    lines = [f"{samples} samples of the thread holding the GIL", ""]
    for title, counter in (("own samples", own), ("with callees", total)):
        lines.append(f"Top {top} functions by {title}:")
        for frame, count in counter.most_common(top):
            lines.append(f"  {100 * count / max(samples, 1):5.1f}%  {frame}")
        lines.append("")
    return "\n".join(lines)


def _short(frame: str) -> str:
    """Shorten `function (/long/path/to/module.py:12)` to `function (module.py)`."""
    name, _, location = frame.partition(" (")
    path = location.split(":")[0]
    parts = Path(path).parts
    where = "/".join(parts[-2:]) if parts else path
    return f"{name} ({where})"
