"""Reports of lab runs: a rich table, PNG plots (matplotlib, Agg), JSON and Markdown.

Plots follow the dissertation's appendix A: throughput (Mbit/s) over time, one line per
series, the mean over runs with error bars of 1.5 standard deviations, axes from zero,
events marked by dashed vertical lines labelled at the top.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from itertools import cycle
from pathlib import Path
from typing import Any

from rich.table import Table

from braid.lab.experiment import ScenarioResult, SeriesResult

COLOURS = [
    "tab:blue",
    "tab:red",
    "tab:green",
    "tab:orange",
    "tab:purple",
    "tab:brown",
    "tab:pink",
    "tab:gray",
    "tab:olive",
    "tab:cyan",
]


def _fmt(value: float | None, digits: int = 1, suffix: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}{suffix}"


def _mbps(value: float | None) -> str:
    """Mbit/s with one decimal; three below 1 Mbit/s (voice-like UDP)."""
    return _fmt(value, 3 if value is not None and value < 1.0 else 1)


def _median(values: list[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def series_row(result: ScenarioResult, series: SeriesResult) -> dict[str, Any]:
    """The numbers of one table row (medians over runs)."""
    runs = series.runs
    retrans = [r.retransmits for r in runs if r.retransmits is not None]
    p50 = [r.ping_ms["p50"] for r in runs if r.ping_ms]
    p95 = [r.ping_ms["p95"] for r in runs if r.ping_ms]
    lost = [r.lost_percent for r in runs if r.lost_percent is not None]
    counted = [r for r in runs if r.lost_packets is not None and r.packets is not None]
    ccs = sorted({r.cc for r in runs if r.cc})
    efficiency = None if series.name.startswith("link-") else result.efficiency(series.name)
    return {
        "series": series.name,
        "mbps": series.mbps,
        "min": min((r.mbps for r in runs), default=None),
        "max": max((r.mbps for r in runs), default=None),
        "runs": len(runs),
        "efficiency": efficiency,
        "retransmits": _median([float(x) for x in retrans]),
        "lost_percent": _median([float(x) for x in lost]),
        "lost_packets": sum(r.lost_packets or 0 for r in counted) if counted else None,
        "packets": sum(r.packets or 0 for r in counted) if counted else None,
        "p50": _median(p50),
        "p95": _median(p95),
        "cc": ", ".join(ccs) if ccs else ("udp" if result.scenario.traffic.kind == "udp" else "-"),
    }


def lost_cell(row: dict[str, Any]) -> str:
    """UDP loss: the median of the runs' lost %, then lost/total datagrams of all runs."""
    text = _fmt(row["lost_percent"], 2)
    if row.get("lost_packets") is not None and row.get("packets") is not None:
        text += f" ({row['lost_packets']}/{row['packets']})"
    return text


def rich_table(result: ScenarioResult, title: str | None = None) -> Table:
    """The per-scenario table shown on the terminal."""
    scn = result.scenario
    links = ", ".join(f"{k}: {link.describe()}" for k, link in enumerate(scn.links, start=1))
    table = Table(
        title=title
        or f"{scn.name} — {scn.traffic} {scn.direction}, {scn.duration:g} s x {scn.repeat}",
        caption=f"links {links}\nefficiency = series / sum of the links alone; ping ms under load"
        + (
            "; lost % = median of runs (lost/sent datagrams, all runs)"
            if scn.traffic.kind == "udp"
            else ""
        ),
    )
    udp = scn.traffic.kind == "udp"
    for column in (
        "series",
        "Mbit/s",
        "runs",
        "efficiency",
        "lost % (lost/sent)" if udp else "retrans",
        "ping p50",
        "ping p95",
        "cc",
    ):
        table.add_column(column, justify="left" if column in ("series", "cc") else "right")
    for series in result.series.values():
        row = series_row(result, series)
        spread = (
            f"{row['runs']} ({_mbps(row['min'])}-{_mbps(row['max'])})"
            if row["runs"] > 1
            else str(row["runs"])
        )
        table.add_row(
            row["series"],
            _mbps(row["mbps"]),
            spread,
            _fmt(None if row["efficiency"] is None else row["efficiency"] * 100, 0, " %"),
            lost_cell(row) if udp else _fmt(row["retransmits"], 0),
            _fmt(row["p50"]),
            _fmt(row["p95"]),
            row["cc"],
        )
    return table


def markdown_table(result: ScenarioResult) -> str:
    """The same table in Markdown (for docs/evaluation.md)."""
    udp = result.scenario.traffic.kind == "udp"
    head = [
        "series",
        "Mbit/s (median)",
        "runs (min-max)",
        "efficiency",
        "lost % (lost/sent datagrams)" if udp else "retransmits",
        "ping p50 ms",
        "ping p95 ms",
        "cc",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for series in result.series.values():
        row = series_row(result, series)
        lines.append(
            "| "
            + " | ".join(
                [
                    row["series"],
                    _mbps(row["mbps"]),
                    f"{row['runs']} ({_mbps(row['min'])}-{_mbps(row['max'])})",
                    _fmt(None if row["efficiency"] is None else row["efficiency"] * 100, 0, " %"),
                    lost_cell(row) if udp else _fmt(row["retransmits"], 0),
                    _fmt(row["p50"]),
                    _fmt(row["p95"]),
                    row["cc"],
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def write_json(results: Sequence[ScenarioResult], path: Path) -> None:
    """Write ``--json FILE``: one scenario's result in issue 3's schema (series merged if several)."""
    merged: dict[str, Any] = {"series": {}}
    for result in results:
        for name, series in result.to_json()["series"].items():
            key = name if name not in merged["series"] else f"{result.scenario.name}/{name}"
            merged["series"][key] = series
    path.write_text(json.dumps(merged, indent=2) + "\n")


def mean_curve(series: SeriesResult) -> tuple[list[float], list[float], list[float]]:
    """Time, mean and standard deviation over runs of the per-interval samples."""
    runs = [r.samples for r in series.runs if r.samples]
    if not runs:
        return [], [], []
    length = min(len(s) for s in runs)
    times = [statistics.fmean(s[i][0] for s in runs) for i in range(length)]
    means = [statistics.fmean(s[i][1] for s in runs) for i in range(length)]
    stds = [
        statistics.pstdev([s[i][1] for s in runs]) if len(runs) > 1 else 0.0 for i in range(length)
    ]
    return times, means, stds


def draw_curves(
    axes: Any,
    curves: Sequence[tuple[str, SeriesResult]],
    *,
    title: str,
    events: Sequence[tuple[float, str]] = (),
) -> None:
    """Draw throughput curves (mean over runs, error bars 1.5 sigma) and events on ``axes``."""
    colours = cycle(COLOURS)
    for label, entry in curves:
        colour = next(colours)
        times, means, stds = mean_curve(entry)
        if not times:
            continue
        runs = len(entry.runs)
        axes.errorbar(
            times,
            means,
            yerr=[1.5 * s for s in stds] if runs > 1 else None,
            capsize=3,
            ecolor="grey",
            color=colour,
            label=f"{label} ({entry.mbps:.1f} Mbit/s, {runs} run{'s' if runs > 1 else ''})",
        )
    for at, text in events:
        axes.axvline(at, linestyle="--", color="grey")
        axes.annotate(
            text, (at, 1.01), xycoords=axes.get_xaxis_transform(), ha="center", fontsize=8
        )
    axes.set_title(title, pad=18 if events else None)
    axes.set_xlabel("Time (s)")
    axes.set_ylabel("Throughput (Mbit/s)")
    axes.set_ylim(bottom=0)
    axes.set_xlim(left=0)
    axes.grid(True, alpha=0.3)
    axes.legend(loc="lower right", fontsize=8)


def default_title(result: ScenarioResult) -> str:
    """ "name: tcp up, cc cubic"."""
    scn = result.scenario
    return f"{scn.name}: {scn.traffic} {scn.direction}, cc {scn.cc}"


def save_figure(
    panels: Sequence[tuple[str, Sequence[tuple[str, SeriesResult]], Sequence[tuple[float, str]]]],
    path: Path,
) -> Path:
    """Write a PNG with one panel per (title, curves, events); return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes_list = plt.subplots(1, len(panels), figsize=(7.5 * len(panels), 4.8), squeeze=False)
    for index, (title, curves, events) in enumerate(panels):
        draw_curves(axes_list[0][index], curves, title=title, events=events)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot(
    results: Sequence[ScenarioResult], path: Path, *, titles: Sequence[str | None] | None = None
) -> Path:
    """Write a PNG with one panel per scenario result (every series of it); return its path."""
    panels = []
    for index, result in enumerate(results):
        title = (titles[index] if titles else None) or default_title(result)
        panels.append((title, list(result.series.items()), result.event_times))
    return save_figure(panels, path)


def window_mean(samples: Sequence[tuple[float, float]], start: float, end: float) -> float | None:
    """Mean throughput of the samples whose interval ends in (start, end]."""
    values = [v for t, v in samples if start < t <= end]
    return statistics.fmean(values) if values else None


def recovery_time(
    samples: Sequence[tuple[float, float]], after: float, target: float, interval: float
) -> float | None:
    """Seconds from ``after`` until the first sample reaching ``target`` Mbit/s (sample end time)."""
    for t, v in samples:
        if t - interval >= after - 1e-9 and v >= target:
            return max(0.0, t - after)
    return None


def cut_shortfall(
    samples: Sequence[tuple[float, float]], cut: float, restore: float, interval: float
) -> float | None:
    """Seconds of the remaining links' capacity a flow lost in the 3 s after a cut: the
    samples' shortfall below the run's level during the cut (its median from 2 s after
    the cut to the return), summed and divided by that level. A stall of 0.25 s counts
    0.25; so do two dips to half a level. None without a level."""
    during = sorted(v for t, v in samples if cut + 2.0 <= t - interval and t <= restore)
    if not during or not during[len(during) // 2]:
        return None
    level = during[len(during) // 2]
    return sum(max(0.0, level - v) * interval / level for t, v in samples if cut < t <= cut + 3.0)


def longest_stall(samples: Sequence[tuple[float, float]], interval: float) -> float:
    """Seconds of the longest run of consecutive samples below 10 % of the median sample
    (the flow all but stopped); a multiple of ``interval``, 0.0 if none."""
    values = sorted(v for _, v in samples)
    if not values:
        return 0.0
    floor = 0.1 * values[len(values) // 2]
    longest = run = 0
    for _, v in samples:
        run = run + 1 if v < floor else 0
        longest = max(longest, run)
    return longest * interval
