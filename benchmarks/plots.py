"""The plots of the results page, drawn with matplotlib (Agg, PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

if TYPE_CHECKING:
    from .phases import BurstRun
    from .run import Plan, SideResults

STYLE = {
    ("ours", "original"): ("this service, original client", "tab:blue", "o"),
    ("ours", "reader"): ("this service, reader on B", "tab:cyan", "o"),
    ("genkit", "original"): ("Genkit JS, original client", "tab:red", "s"),
    ("genkit", "reader"): ("Genkit JS, reader on B", "tab:orange", "s"),
}


def latency_plot(plan: Plan, results: dict[str, SideResults], path: Path) -> Path:
    """Plot every chunk's latency against its position in the paced stream."""
    figure, axes = plt.subplots(figsize=(10, 5.5), dpi=110)
    for (name, client), (label, color, marker) in STYLE.items():
        paced = results[name].paced
        assert paced is not None
        reading = paced.original if client == "original" else paced.reader
        latencies = [value * 1000 for value in reading.latencies]
        axes.scatter(
            range(len(latencies)),
            latencies,
            s=3,
            color=color,
            marker=marker,
            alpha=0.5,
            linewidths=0,
            label=label,
        )

    for first, stop in (plan.start_window, plan.late_window):
        axes.axvspan(first, stop, color="grey", alpha=0.12)

    axes.set_yscale("log")
    axes.set_xlabel("chunk position in the stream")
    axes.set_ylabel("producer-to-client latency (ms, log scale)")
    axes.set_title(
        f"Latency by position, {plan.paced_rate:g} chunks/s (shaded: the windows "
        "of the table; this service's two clients overlap)"
    )
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(markerscale=4, loc="upper left")

    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def throughput_plot(plan: Plan, results: dict[str, SideResults], path: Path) -> Path:
    """Plot the chunks a reader on B received over time while the paced
    stream offered 50 chunks/s, and the persisted rate of the no-delay
    streams by their length."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.8), dpi=110)
    sides = (("ours", "this service", "tab:blue"), ("genkit", "Genkit JS", "tab:red"))

    for name, label, color in sides:
        paced = results[name].paced
        assert paced is not None
        start = paced.original.started
        times = [arrival - start for arrival in paced.reader.arrivals]
        left.plot(times, range(1, len(times) + 1), color=color, label=label)
    offered_end = 1.0 + plan.paced_count / plan.paced_rate
    left.plot(
        [1.0, offered_end],
        [1, plan.paced_count],
        color="grey",
        linestyle="--",
        label=f"sent by the flow ({plan.paced_rate:g}/s)",
    )
    left.set_xlabel("seconds since the request")
    left.set_ylabel("chunks received by a reader on B")
    left.set_title(f"One stream at {plan.paced_rate:g} chunks/s")
    left.grid(True, alpha=0.3)
    left.legend(loc="lower right")

    width = 0.38
    counts = sorted(
        {run.count for name, _, _ in sides for run in _bursts(results, name)}
    )
    for offset, (name, label, color) in zip(
        (-width / 2, width / 2), sides, strict=True
    ):
        runs = {run.count: run for run in _bursts(results, name)}
        rates = {count: run.persisted_rate for count, run in runs.items()}
        positions = [
            index + offset for index, count in enumerate(counts) if count in rates
        ]
        values = [rates[count] for count in counts if count in rates]
        right.bar(positions, values, width, color=color, label=label)
        labels = [
            f"{rates[count]:,.0f}" + ("" if runs[count].finished else "\nfailed")
            for count in counts
            if count in rates
        ]
        for position, value, text in zip(positions, values, labels, strict=True):
            right.annotate(text, (position, value), ha="center", va="bottom")
    right.set_xticks(range(len(counts)), [f"{count:,}" for count in counts])
    right.set_yscale("log")
    right.set_xlabel("chunks sent with no delay")
    right.set_ylabel("chunks persisted per second (log scale)")
    right.set_title("Persisted chunk rate of one stream")
    right.grid(True, axis="y", which="both", alpha=0.3)
    right.legend(loc="upper left")

    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def _bursts(results: dict[str, SideResults], name: str) -> list[BurstRun]:
    return results[name].bursts or []
