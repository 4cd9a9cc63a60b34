"""``braid lab eval``: the dissertation's evaluation chapter, reproduced in the lab.

Cases (dissertation section in brackets): two equal connections vs one (4.3.5); inbound and
outbound (4.3.2); unequal vs equal connections (4.4.1), plus SPEC §7's 1:4 rate and delay;
2, 3 and 4 equal connections (4.4.2); bandwidth variation (4.4.3); connection loss and
return (4.4.4). Each case runs bundled ``eval-*`` scenarios and the whole run is written to
``docs/evaluation.md`` with its tables and plots under ``docs/img/``.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from rich.console import Console

import braid
from braid.lab.experiment import ScenarioResult, SeriesResult, run_scenarios
from braid.lab.netns import LabError, check_environment
from braid.lab.report import markdown_table, recovery_time, rich_table, save_figure, window_mean
from braid.lab.scenario import load_scenario


@dataclass(frozen=True)
class Case:
    """One evaluation question, the scenarios that answer it, and how to plot them."""

    key: str
    title: str
    question: str
    scenarios: tuple[str, ...]
    compare: bool = False  # one panel with the braid curve of each scenario


CASES = (
    Case(
        "two-equal",
        "Two equal connections vs one",
        "Does one TCP flow get the bandwidth of both links? (dissertation 4.3.5; SPEC §7: "
        "at least 95 % of the summed goodput.)",
        ("eval-two-equal",),
    ),
    Case(
        "direction",
        "Inbound and outbound",
        "Are the gains the same in both directions? (dissertation 4.3.2: inbound is to the "
        'client, `direction = "down"`; outbound is from it.)',
        ("eval-two-equal", "eval-outbound"),
    ),
    Case(
        "unequal",
        "Unequal connections compared with equal ones",
        "Do 10 + 20 Mbit/s links beat 2 x 10 Mbit/s, falling between 2 x 10 and 2 x 20? "
        "(dissertation 4.4.1)",
        ("eval-equal-2x10", "eval-unequal", "eval-two-equal"),
        compare=True,
    ),
    Case(
        "unequal-delay",
        "Unequal rate and delay (1:4, 1:4)",
        "Links of unequal speed *and* latency, where naive striping reorders badly (SPEC §7: "
        "at least 90 %).",
        ("eval-unequal-1-4",),
    ),
    Case(
        "scaling",
        "Scaling with 2, 3 and 4 equal connections",
        "Does throughput grow with the number of links? (dissertation 4.4.2; SPEC §7: at "
        "least 90 % over 4 links.)",
        ("eval-scale-2", "eval-scale-3", "eval-scale-4"),
        compare=True,
    ),
    Case(
        "variation",
        "Bandwidth variation",
        "Does the flow follow a link whose rate drops and comes back? (dissertation 4.4.3)",
        ("eval-variation",),
    ),
    Case(
        "loss",
        "Connection loss and return",
        "Does the flow survive a link going silent, and use it again when it returns? "
        "(dissertation 4.4.4; SPEC §4 and §7: recovery under 1 s, full aggregate within 3 s.)",
        ("eval-loss",),
    ),
)


def _finding(result: ScenarioResult) -> str:
    """One sentence of numbers for a scenario."""
    parts = []
    total = result.links_sum()
    if total is not None:
        parts.append(f"the links alone sum to {total:.1f} Mbit/s")
    for name in ("braid", "mptcp"):
        entry = result.series.get(name)
        if entry is None or not entry.runs:
            continue
        eff = result.efficiency(name)
        text = f"{name} {entry.mbps:.1f} Mbit/s"
        if eff is not None:
            text += f" ({eff * 100:.0f} % of that sum)"
        parts.append(text)
    text = "; ".join(parts) + "." if parts else "No result."
    braid_series = result.series.get("braid")
    if braid_series is not None and braid_series.runs:
        names = sorted({k for r in braid_series.runs for k in r.cpu_percent})
        usage = []
        for key in names:
            values = sorted(r.cpu_percent[key] for r in braid_series.runs if key in r.cpu_percent)
            usage.append(f"{key} {values[len(values) // 2]:.0f} %")
        if usage:
            text += f" CPU during the braid runs (100 % = one core): {', '.join(usage)}."
    return text


def _event_finding(result: ScenarioResult) -> str:
    """Throughput before, during and after the scenario's events, per series."""
    events = result.scenario.events
    if len(events) < 2:
        return ""
    first, second = events[0].at, events[1].at
    end = result.scenario.duration
    interval = result.scenario.interval
    lines = []
    for name, entry in result.series.items():
        if not entry.runs:
            continue
        windows = []
        for start, stop in ((1.0, first), (first + 1.0, second), (second + 3.0, end)):
            values = [window_mean(r.samples, start, stop) for r in entry.runs]
            known = [v for v in values if v is not None]
            windows.append(sum(known) / len(known) if known else None)
        text = " → ".join("-" if v is None else f"{v:.1f}" for v in windows)
        line = f"- {name}: {text} Mbit/s (before, during, after; the first second after each event left out)"
        before, during, _ = windows
        if before and during:
            down = [recovery_time(r.samples, first, 0.8 * during, interval) for r in entry.runs]
            back = [recovery_time(r.samples, second, 0.9 * before, interval) for r in entry.runs]
            line += (
                f"; reached 80 % of the level during the event {_seconds(down)} after it, "
                f"90 % of the level before {_seconds(back)} after the second event"
            )
        lines.append(line)
    return "\n".join(lines)


def _seconds(values: list[float | None]) -> str:
    known = sorted(v for v in values if v is not None)
    if not known:
        return "never"
    text = f"{known[len(known) // 2]:.2f} s"
    missing = len(values) - len(known)
    return text + (f" ({missing} of {len(values)} runs never)" if missing else "")


def run_evaluation(
    *,
    out: Path,
    quick: bool,
    only: list[str] | None,
    console: Console,
    progress: Callable[[str], None],
) -> int:
    """Run the cases, print tables, write the Markdown report and the plots."""
    check_environment(mptcp=True)
    cases = [c for c in CASES if not only or c.key in only]
    if not cases:
        raise LabError(f"no such case; cases: {', '.join(c.key for c in CASES)}")
    img_dir = out.parent / "img"
    results: dict[str, ScenarioResult] = {}
    started = time.time()
    for case in cases:
        for name in case.scenarios:
            if name in results:
                continue
            scenario = load_scenario(name)
            if quick:
                scenario = replace(scenario, repeat=1)
            progress(f"[bold]{case.key}[/bold]: {name} — {scenario.description}")
            (result,) = run_scenarios([scenario], progress=progress)
            results[name] = result
            console.print(rich_table(result))
    minutes = (time.time() - started) / 60
    sections = []
    for case in cases:
        sections.append(_section(case, results, img_dir, out.parent))
    header = _header(minutes, quick)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(header + "\n\n".join(sections) + "\n")
    console.print(f"wrote {out} and plots in {img_dir}")
    notes = [n for r in results.values() for n in r.notes]
    for note in notes:
        console.print(f"[yellow]note:[/yellow] {note}")
    return 1 if notes else 0


def _header(minutes: float, quick: bool) -> str:
    cpu = os.cpu_count() or 0
    return (
        "# braid evaluation\n\n"
        f"Generated by `braid lab eval{' --quick' if quick else ''}` (braid {braid.__version__}) "
        f"on {time.strftime('%Y-%m-%d')}, Linux {platform.release()}, {cpu} CPU cores; the whole "
        f"run took {minutes:.0f} minutes. Every number below comes from that run: regenerate this "
        "file with `sudo .venv/bin/python -m braid lab eval`.\n\n"
        "Method (see docs/lab.md): client, local portal, link emulator, remote portal and server "
        "are network namespaces on one host; each link is shaped by tbf (rate, 50 ms queue), "
        "braid's own AF_PACKET relay (one-way delay) and nftables (loss, cuts). Traffic is one "
        "iperf3 TCP flow with CUBIC, sampled every 0.5 s at the receiver. Each series runs "
        "`repeat` times; tables give the median and the range, plots the mean with error bars "
        "of 1.5 sigma (as the dissertation's appendix A). *link-K* is link K alone with plain "
        "routing, *mptcp* is kernel MPTCP end to end over all links, *braid* is one flow "
        "through both portals. Efficiency = series ÷ sum of the links' solo goodput. Ping is "
        "measured through the same path during the load. Everything, the two braid portals "
        "included, shares the machine's cores, so absolute rates are kept at or below "
        "~80 Mbit/s.\n\n"
    )


def _settings(result: ScenarioResult) -> str:
    braid_settings = result.scenario.braid
    if not braid_settings:
        return "braid's defaults"
    return ", ".join(f"{key} = {value!r}" for key, value in braid_settings.items())


def _section(case: Case, results: dict[str, ScenarioResult], img_dir: Path, root: Path) -> str:
    parts = [f"## {case.title}\n", case.question + "\n"]
    present = [results[n] for n in case.scenarios if n in results]
    for result in present:
        links = ", ".join(link.describe() for link in result.scenario.links)
        parts.append(
            f"**{result.scenario.name}** — {result.scenario.description}; "
            f"{result.scenario.traffic} {result.scenario.direction}, "
            f"{result.scenario.duration:g} s x {result.scenario.repeat}; links: {links}; "
            f"braid session settings: {_settings(result)}.\n"
        )
        parts.append(markdown_table(result) + "\n")
        parts.append(_finding(result) + "\n")
        events = _event_finding(result)
        if events:
            parts.append(events + "\n")
        for note in result.notes:
            parts.append(f"> note: {note}\n")
    image = img_dir / f"eval-{case.key}.png"
    panels: list[tuple[str, list[tuple[str, SeriesResult]], list[tuple[float, str]]]]
    if case.compare:
        curves: list[tuple[str, SeriesResult]] = []
        for result in present:
            entry = result.series.get("braid")
            if entry is not None:
                curves.append((result.scenario.name, entry))
        panels = [(f"{case.title}: braid", curves, [])]
    else:
        panels = [
            (
                f"{r.scenario.name}: {r.scenario.traffic} {r.scenario.direction}",
                list(r.series.items()),
                r.event_times,
            )
            for r in present
        ]
    save_figure(panels, image)
    parts.append(f"![{case.title}]({image.relative_to(root)})\n")
    return "\n".join(parts)
