"""The fault suite's summary: what its scenarios sent, lost and waited for.

Fault and load tests take the `fault_report` fixture, record each scenario
and each reader's sequence numbers in it, and assert on what it counted. The
totals and the measured figures are printed at the end of the pytest run.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import pytest

from support.sse import StreamResult


@dataclass(frozen=True)
class Delivery:
    """What the readers of one stream missed or received twice."""

    lost: int
    duplicates: int


@dataclass
class FaultReport:
    """Totals over every fault and load scenario of the run."""

    scenarios: list[str] = field(default_factory=list)
    chunks_sent: int = 0
    chunks_lost: int = 0
    duplicates: int = 0
    longest_dead_wait: float = 0.0
    figures: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def scenario(self, name: str) -> None:
        with self._lock:
            self.scenarios.append(name)

    def check_delivery(self, sent: int, *readers: Sequence[int]) -> Delivery:
        """Count the chunks each reader missed or got twice, out of positions
        0 to `sent - 1` of one stream; a position outside counts as a
        duplicate."""
        lost = 0
        duplicates = 0
        for seqs in readers:
            counts = collections.Counter(seqs)
            lost += sum(1 for seq in range(sent) if seq not in counts)
            duplicates += sum(count - 1 for count in counts.values())
            duplicates += sum(1 for seq in counts if not 0 <= seq < sent)

        with self._lock:
            self.chunks_sent += sent
            self.chunks_lost += lost
            self.duplicates += duplicates
        return Delivery(lost, duplicates)

    def dead_wait(self, seconds: float) -> None:
        """Record how long a reader waited on a stream whose producer was gone."""
        with self._lock:
            self.longest_dead_wait = max(self.longest_dead_wait, seconds)

    def figure(self, text: str) -> None:
        """Record a measured figure to print with the summary."""
        with self._lock:
            self.figures.append(text)

    def lines(self) -> Iterator[str]:
        yield f"scenarios run: {len(self.scenarios)}"
        yield f"chunks sent: {self.chunks_sent}"
        yield f"chunks lost: {self.chunks_lost}"
        yield f"duplicates: {self.duplicates}"
        yield (
            f"longest wait of a reader on a dead stream: {self.longest_dead_wait:.1f} s"
        )
        for name in self.scenarios:
            yield f"  scenario: {name}"
        for text in self.figures:
            yield f"  {text}"


def assert_full_countdowns(
    report: FaultReport, results: Sequence[StreamResult], count: int
) -> None:
    """Check that every reader got a whole countdown from `count`, each chunk
    once, and count the chunks in the report."""
    for result in results:
        assert result.status_code == 200
        assert result.seqs == list(range(count))
        counts = [chunk["count"] for chunk in result.chunks]
        assert counts == list(range(count, 0, -1))
        assert result.final == {"result": "Liftoff!"}
        result.assert_one_final_frame_last()

    delivery = report.check_delivery(count, *(result.seqs for result in results))
    assert delivery.lost == 0
    assert delivery.duplicates == 0


_report = FaultReport()


@pytest.fixture(scope="session")
def fault_report() -> FaultReport:
    return _report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _report.scenarios:
        return
    terminalreporter.section("fault suite summary")
    for line in _report.lines():
        terminalreporter.write_line(line)
