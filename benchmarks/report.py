"""The figures of a run: the table with ratios, the targets, the plots and the
results page."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .phases import BurstRun, median, percentile
from .servers import ROOT

if TYPE_CHECKING:
    from .run import Plan, SideResults

PAGE_TEMPLATE = ROOT / "benchmarks" / "page.md"
MIB = 1024 * 1024
SIDES = ("ours", "genkit")
_LABELS = {"ours": "This service", "genkit": "Genkit JS"}


@dataclass
class Row:
    """One figure measured for both implementations."""

    label: str
    unit: str
    values: dict[str, float | None]
    texts: dict[str, str]
    lower_is_better: bool
    ratio_text: str = ""

    def __post_init__(self) -> None:
        if not self.ratio_text:
            ours, genkit = self.values["ours"], self.values["genkit"]
            self.ratio_text = (
                format_ratio(ours / genkit) if ours is not None and genkit else "n/a"
            )


def format_ratio(ratio: float) -> str:
    """Format a ratio with three significant digits, large ones in full."""
    return f"{ratio:,.0f}" if ratio >= 100 else f"{ratio:.3g}"


@dataclass
class Target:
    text: str
    met: bool | None
    detail: str
    why_missed: str
    """The known cause, shown when the target is missed."""
    shortfall: str = ""

    def render(self) -> str:
        line = f"{self.text}: {self.detail}"
        if self.met is False:
            line += f". Missed by {self.shortfall}. Why: {self.why_missed}"
        return line


@dataclass
class Summary:
    rows: list[Row]
    targets: list[Target]
    machine: dict[str, str]
    elapsed: float
    plan: Plan
    notes: list[str] = field(default_factory=list)


def summarize(
    plan: Plan,
    results: dict[str, SideResults],
    restarts: list[str],
    elapsed: float,
    machine: dict[str, str],
) -> Summary:
    """Collect the table, the targets and the notes of a run.

    `restarts` are the servers restarted because they had died, and
    `machine` is `machine_info()` taken when the run ended.
    """
    rows = [
        _writes_row(results),
        _rate_row(results),
        *_latency_rows(plan, results),
        *_replay_rows(plan, results),
        _largest_row(results),
        *_memory_rows(plan, results),
    ]
    notes = list(restarts)
    for name in SIDES:
        for run in results[name].bursts or []:
            if not run.finished:
                notes.append(_failure_note(name, run))
        memory = results[name].memory
        if memory is not None and memory.failures:
            notes.append(
                f"{_LABELS[name]}, memory load: {len(memory.failures)} of "
                f"{memory.streams + memory.readers} clients did not get every "
                f"chunk and the result: {'; '.join(memory.failures[:3])}"
            )
    return Summary(rows, _targets(plan, results), machine, elapsed, plan, notes)


def _writes_row(results: dict[str, SideResults]) -> Row:
    values: dict[str, float | None] = {}
    texts = {}
    for name in SIDES:
        paced = results[name].paced
        assert paced is not None
        values[name] = paced.writes_per_thousand
        texts[name] = f"{paced.writes_per_thousand:,.0f}"
    return Row(
        "Firestore writes per 1,000 chunks at 50 chunks/s",
        "documents written",
        values,
        texts,
        lower_is_better=True,
    )


def _rate_row(results: dict[str, SideResults]) -> Row:
    values: dict[str, float | None] = {}
    texts = {}
    for name in SIDES:
        run = fastest_burst(results[name])
        values[name] = run.persisted_rate
        texts[name] = f"{run.persisted_rate:,.0f} (stream of {run.stored:,} chunks)"
    return Row(
        "Highest persisted chunk rate of one stream (no delay)",
        "chunks/s",
        values,
        texts,
        lower_is_better=False,
    )


def fastest_burst(results: SideResults) -> BurstRun:
    """Return the no-delay stream with the highest persisted rate."""
    return max(results.bursts or [], key=lambda run: run.persisted_rate)


def _latency_rows(plan: Plan, results: dict[str, SideResults]) -> list[Row]:
    rows = []
    windows = {"start": plan.start_window, "late": plan.late_window}
    for client in ("original", "reader"):
        for window_name, (first, stop) in windows.items():
            for quantile in (0.5, 0.99):
                values: dict[str, float | None] = {}
                for name in SIDES:
                    latencies = window_latencies(results[name], client, first, stop)
                    values[name] = percentile(latencies, quantile) * 1000
                where = (
                    f"chunks {first:,}-{stop - 1:,}"
                    if window_name == "start"
                    else f"after {first:,} chunks"
                )
                who = "original client" if client == "original" else "reader on B"
                rows.append(
                    Row(
                        f"Latency p{quantile * 100:.0f}, {who}, {where}",
                        "ms",
                        values,
                        {
                            name: f"{value:,.1f}"
                            for name, value in values.items()
                            if value is not None
                        },
                        lower_is_better=True,
                    )
                )
    return rows


def window_latencies(
    results: SideResults, client: str, first: int, stop: int
) -> list[float]:
    paced = results.paced
    assert paced is not None
    reading = paced.original if client == "original" else paced.reader
    return reading.latencies[first:stop]


def _replay_rows(plan: Plan, results: dict[str, SideResults]) -> list[Row]:
    rows = []
    for count in plan.replay_counts:
        values: dict[str, float | None] = {}
        texts = {}
        for name in SIDES:
            times = (results[name].replays or {}).get(count)
            if times:
                values[name] = median(times)
                texts[name] = f"{median(times) * 1000:,.0f}"
            else:
                values[name] = None
                reason = (results[name].replay_failures or {}).get(count, "n/a")
                texts[name] = f"n/a: {reason}"
        rows.append(
            Row(
                f"Replay of a finished stream of {count:,} chunks, "
                f"median of {plan.replay_repeats}",
                "ms",
                values,
                texts,
                lower_is_better=True,
            )
        )
    return rows


def _largest_row(results: dict[str, SideResults]) -> Row:
    values: dict[str, float | None] = {}
    texts = {}
    open_ended = {}
    for name in SIDES:
        bursts = results[name].bursts or []
        failed = [run for run in bursts if not run.finished]
        stored = max(run.stored for run in bursts)
        values[name] = stored
        size = countdown_bytes(max(bursts, key=lambda run: run.stored)) / MIB
        open_ended[name] = not failed
        texts[name] = (
            f"≥ {stored:,} chunks ({size:.1f} MiB), no failure"
            if not failed
            else f"{stored:,} chunks ({size:.2f} MiB), then failed"
        )
    ours, genkit = values["ours"], values["genkit"]
    ratio = "n/a"
    if ours is not None and genkit:
        ratio = ("≥ " if open_ended["ours"] else "") + format_ratio(ours / genkit)
    return Row(
        "Largest stream stored before failure",
        "chunks",
        values,
        texts,
        lower_is_better=False,
        ratio_text=ratio,
    )


def countdown_bytes(run: BurstRun) -> int:
    """Return the JSON bytes of the chunks a burst run stored: a countdown
    chunk from `count` down, each with a 32-character timestamp."""
    return sum(
        len(f'{{"count":{n},"message":"T-{n}...","timestamp":""}}') + 32
        for n in range(run.count, run.count - run.stored, -1)
    )


def _memory_rows(plan: Plan, results: dict[str, SideResults]) -> list[Row]:
    rows = []
    for role, what in (
        ("primary", "A, the producing instance"),
        ("secondary", "B, the reading instance"),
    ):
        values: dict[str, float | None] = {}
        texts = {}
        for name in SIDES:
            memory = results[name].memory
            assert memory is not None
            peak = memory.peaks[f"{name}-{role}"] / MIB
            base = memory.baseline[f"{name}-{role}"] / MIB
            values[name] = peak
            texts[name] = f"{peak:,.0f} (idle {base:,.0f})"
        rows.append(
            Row(
                f"Peak memory of {what}, {plan.memory_streams} streams and "
                f"{plan.memory_streams * plan.memory_readers_per_stream} readers",
                "MiB RSS",
                values,
                texts,
                lower_is_better=True,
            )
        )

    done: dict[str, float | None] = {}
    texts = {}
    for name in SIDES:
        memory = results[name].memory
        assert memory is not None
        total = memory.streams + memory.readers
        done[name] = memory.completed / total
        texts[name] = f"{memory.completed} of {total} in {memory.duration:.0f} s"
    rows.append(
        Row(
            "Clients of that load that got every chunk and the result",
            "clients",
            done,
            texts,
            lower_is_better=False,
        )
    )
    return rows


def _targets(plan: Plan, results: dict[str, SideResults]) -> list[Target]:
    ours, genkit = results["ours"], results["genkit"]
    assert ours.paced is not None
    assert genkit.paced is not None
    targets = []

    writes = genkit.paced.writes_per_thousand / ours.paced.writes_per_thousand
    targets.append(
        Target(
            "At least 20 times fewer writes per chunk at 50 chunks/s",
            writes >= 20,
            f"{writes:.1f} times fewer",
            "a stream writes its record about once per write_interval (0.5 s), "
            "so at 50 chunks/s the factor is about 50 x 0.5 = 25 less the "
            "writes that create and end the stream, the lease renewals and "
            "the chunk documents",
            shortfall=f"{20 / writes:.2f} times",
        )
    )

    rate = fastest_burst(ours).persisted_rate / fastest_burst(genkit).persisted_rate
    targets.append(
        Target(
            "At least 10 times the sustained chunk rate",
            rate >= 10,
            f"{format_ratio(rate)} times",
            "see the notes of this run: the machine's load or a failed stream",
            shortfall=f"{10 / rate:.2f} times",
        )
    )

    early = percentile(window_latencies(ours, "reader", *plan.start_window), 0.5)
    late = percentile(window_latencies(ours, "reader", *plan.late_window), 0.5)
    targets.append(
        Target(
            "Reader latency independent of position: p50 after "
            f"{plan.late_window[0]:,} chunks within 1.5 times the p50 at chunk "
            f"{plan.start_window[0]}",
            late <= 1.5 * early,
            f"{late / early:.2f} times ({late * 1000:.0f} ms against "
            f"{early * 1000:.0f} ms)",
            "the reader follows the record, whose tail is bounded at 64 KiB "
            "whatever the length of the stream, so the difference comes from "
            "the machine's load during one window; the plot shows whether it "
            "is a trend or a burst",
            shortfall=f"{late / early / 1.5:.2f} times",
        )
    )

    largest = max(plan.replay_counts)
    times = (ours.replays or {}).get(largest)
    targets.append(
        Target(
            f"Replay of a {largest:,}-chunk stream in under 1 s",
            None if not times else median(times) < 1.0,
            f"{median(times) * 1000:.0f} ms" if times else "not measured",
            "a replay reads the chunk documents in pages and sends them in "
            "64 KiB pieces; on this shared machine the load of other "
            "processes adds to its time",
            shortfall=f"{median(times) - 1.0:.2f} s" if times else "",
        )
    )
    return targets


def _failure_note(name: str, run: BurstRun) -> str:
    label = _LABELS[name]
    died = (
        f", and the producing server process exited with status {run.primary_exit}"
        if run.primary_exit is not None
        else ", and the producing server kept running"
    )
    details = [*run.notes]
    if run.crash:
        details.append(f"its log ends with: {run.crash}")
    extra = f" ({'; '.join(details)})" if details else ""
    return (
        f"{label}, stream of {run.count:,} chunks with no delay: the original "
        f"client's response ended with {run.original.outcome()} after "
        f"{run.original.duration:.1f} s. {run.stored:,} chunks were stored"
        f"{died}{extra}."
    )


def machine_info() -> dict[str, str]:
    """Describe the machine: cores, memory, CPU model, load, software."""
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    memory_kib = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    return {
        "date": _command_output(["date", "-u", "+%Y-%m-%d %H:%M UTC"]),
        "cores (nproc)": str(os.cpu_count()),
        "memory": f"{memory_kib / MIB:.1f} GiB",
        "CPU": cpu,
        "load average (1, 5, 15 min) at the end": " ".join(
            f"{value:.2f}" for value in os.getloadavg()
        ),
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "Node.js": _command_output(["node", "--version"]),
        "Java (emulator)": _command_output(["java", "-version"]).splitlines()[0],
    }


def _command_output(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except OSError as error:
        return f"unavailable ({error})"
    return (done.stdout or done.stderr).strip()


def text_table(summary: Summary) -> str:
    header = ("figure", "unit", "ours", "Genkit JS", "ours / Genkit")
    lines = [header] + [
        (row.label, row.unit, row.texts["ours"], row.texts["genkit"], row.ratio_text)
        for row in summary.rows
    ]
    widths = [max(len(line[index]) for line in lines) for index in range(5)]
    out = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        for line in lines
    ]
    out.append("")
    for target in summary.targets:
        out.append(f"[{_mark(target.met)}] {target.render()}")
    out.extend(f"note: {note}" for note in summary.notes)
    out.append(f"run took {summary.elapsed / 60:.1f} min")
    return "\n".join(out)


def _mark(met: bool | None) -> str:
    return {True: "met", False: "MISSED", None: "n/a"}[met]


def markdown_table(summary: Summary) -> str:
    lines = [
        "| figure | unit | this service | Genkit JS | ours / Genkit |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for row in summary.rows:
        lines.append(
            f"| {row.label} | {row.unit} | {row.texts['ours']} | "
            f"{row.texts['genkit']} | {row.ratio_text} |"
        )
    return "\n".join(lines)


def write_page(
    summary: Summary, results: dict[str, SideResults], output: Path
) -> list[Path]:
    """Write benchmarks.md, its plots and results.json into `output`."""
    from . import plots

    figures = output / "benchmarks"
    figures.mkdir(parents=True, exist_ok=True)
    latency_png = plots.latency_plot(summary.plan, results, figures / "latency.png")
    throughput_png = plots.throughput_plot(
        summary.plan, results, figures / "throughput.png"
    )

    replacements: dict[str, Callable[[], str]] = {
        "table": lambda: markdown_table(summary),
        "targets": lambda: "\n".join(
            f"- **{_mark(target.met)}**: {target.render()}."
            for target in summary.targets
        ),
        "notes": lambda: "\n".join(f"- {note}" for note in summary.notes) or "- none",
        "machine": lambda: "\n".join(
            f"| {key} | {value} |"
            for key, value in summary.machine.items()
            if key != "date"
        ),
        "elapsed": lambda: f"{summary.elapsed / 60:.0f}",
        "date": lambda: summary.machine["date"],
        "plan": lambda: _plan_text(summary.plan),
        "tradeoff": lambda: tradeoff_table(summary.plan, results),
    }
    page = PAGE_TEMPLATE.read_text()
    for key, render in replacements.items():
        page = page.replace("{{" + key + "}}", render())

    page_path = output / "benchmarks.md"
    page_path.write_text(page)
    data_path = figures / "results.json"
    data_path.write_text(json.dumps(_figures_json(summary), indent=2) + "\n")
    return [page_path, latency_png, throughput_png, data_path]


def tradeoff_table(plan: Plan, results: dict[str, SideResults]) -> str:
    """Return the table of writes and latency for each write interval."""
    lines = [
        f"This service with other write intervals, {plan.tradeoff_count:,} "
        f"chunks at {plan.paced_rate:g} chunks/s; latency over all chunks from "
        f"position {plan.start_window[0]} on, in ms:",
        "",
        "| write_interval | writes per 1,000 chunks | original p50 | original p99 "
        "| reader on B p50 | reader on B p99 |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    rows = [
        (f"{interval:g} s", run) for interval, run in results["ours"].tradeoff or []
    ]
    genkit = results["genkit"].paced
    assert genkit is not None
    rows.append(
        (f"Genkit JS (chunks {plan.start_window[0]}-{plan.tradeoff_count - 1})", genkit)
    )
    for label, run in rows:
        first = plan.start_window[0]
        stop = plan.tradeoff_count
        cells = [label, f"{run.writes['documents'] / run.count * 1000:,.0f}"]
        for reading in (run.original, run.reader):
            latencies = reading.latencies[first:stop]
            cells += [
                f"{percentile(latencies, quantile) * 1000:,.1f}"
                for quantile in (0.5, 0.99)
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _plan_text(plan: Plan) -> str:
    return json.dumps(
        {key: getattr(plan, key) for key in plan.__dataclass_fields__}, indent=None
    )


def _figures_json(summary: Summary) -> dict[str, Any]:
    return {
        "rows": [
            {
                "figure": row.label,
                "unit": row.unit,
                "ours": row.values["ours"],
                "genkit": row.values["genkit"],
                "ratio": row.ratio_text,
            }
            for row in summary.rows
        ],
        "targets": [
            {"target": target.text, "met": target.met, "detail": target.detail}
            for target in summary.targets
        ],
        "notes": summary.notes,
        "machine": summary.machine,
        "elapsed_seconds": round(summary.elapsed),
    }
