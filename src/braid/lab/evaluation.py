"""``braid lab eval``: the dissertation's evaluation chapter, reproduced in the lab.

Cases (dissertation section in brackets): two equal connections vs one (4.3.5); inbound and
outbound (4.3.2); unequal vs equal connections (4.4.1), plus SPEC §7's 1:4 rate and delay;
2, 3 and 4 equal connections (4.4.2); bandwidth variation (4.4.3); connection loss and
return (4.4.4). Each case runs bundled ``eval-*`` scenarios and the whole run is written to
``docs/evaluation.md`` with its tables and plots under ``docs/img/``. Later issues add their
own cases (``agg-*``: aggregation, issue 5; ``rec-*``: loss recovery, issue 7), some with a
summary across the case's scenarios (recovery on vs off, residual UDP loss).
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from statistics import median
from typing import Final

from rich.console import Console

import braid
from braid.lab.experiment import ScenarioResult, SeriesResult, run_scenarios
from braid.lab.netns import LabError, check_environment
from braid.lab.report import (
    cut_shortfall,
    longest_stall,
    markdown_table,
    recovery_time,
    rich_table,
    save_figure,
    window_mean,
)
from braid.lab.scenario import load_scenario


@dataclass(frozen=True)
class Case:
    """One evaluation question, the scenarios that answer it, and how to plot them."""

    key: str
    title: str
    question: str
    scenarios: tuple[str, ...]
    compare: bool = False  # one panel with the braid curve of each scenario
    labels: tuple[str, ...] = ()  # a short label per scenario, for the summary
    summary: Callable[[Case, dict[str, ScenarioResult]], str] | None = None  # across scenarios

    def label(self, index: int) -> str:
        """The label of scenario ``index`` ("" when the case has none)."""
        return self.labels[index] if index < len(self.labels) else ""


def braid_mbps(result: ScenarioResult | None) -> float | None:
    """The braid series' median goodput, None when it did not run."""
    entry = None if result is None else result.series.get("braid")
    return entry.mbps if entry is not None and entry.runs else None


def udp_lost(result: ScenarioResult | None, name: str = "braid") -> float | None:
    """A series' residual UDP loss in percent (median of the runs), None when unknown."""
    entry = None if result is None else result.series.get(name)
    if entry is None:
        return None
    values = [r.lost_percent for r in entry.runs if r.lost_percent is not None]
    return float(median(values)) if values else None


def _named(case: Case, index: int) -> str:
    label = case.label(index)
    return f"{case.scenarios[index]} ({label})" if label else case.scenarios[index]


def recovery_summary(case: Case, results: dict[str, ScenarioResult]) -> str:
    """braid's median goodput per scenario, and each one's ratio to the last scenario
    (recovery switched off)."""
    values = [braid_mbps(results.get(name)) for name in case.scenarios]
    parts = [
        f"{_named(case, k)} {'no result' if v is None else f'{v:.1f} Mbit/s'}"
        for k, v in enumerate(values)
    ]
    text = "braid, median of the runs: " + "; ".join(parts) + "."
    off = values[-1]
    ratios = [
        f"{_named(case, k)} ÷ {case.scenarios[-1]} = {v / off:.2f}"
        for k, v in enumerate(values[:-1])
        if v is not None and off
    ]
    if ratios:
        text += " Recovery on vs off: " + "; ".join(ratios) + "."
    return text


def udp_loss_summary(case: Case, results: dict[str, ScenarioResult]) -> str:
    """The residual UDP loss through braid (median of the runs) of each scenario."""
    parts = []
    for k, name in enumerate(case.scenarios):
        lost = udp_lost(results.get(name))
        parts.append(f"{_named(case, k)} {'no result' if lost is None else f'{lost:.2f} %'}")
    return "Residual UDP loss through braid, median of the runs: " + "; ".join(parts) + "."


def _event_summary(
    case: Case,
    results: dict[str, ScenarioResult],
    measure: Callable[[list[tuple[float, float]], float, float, float], float | None],
    *,
    missing: str,
    retransmits: bool,
) -> str:
    """Per scenario and series of a cut-and-restore case: `measure(samples, cut, restore,
    interval)` of each run with their median, the longest stall (median of the runs) and,
    with `retransmits`, the TCP retransmissions (median)."""
    parts = []
    for k, name in enumerate(case.scenarios):
        result = results.get(name)
        events = [] if result is None else [e.at for e in result.scenario.events]
        if result is None or len(events) < 2:
            parts.append(f"{_named(case, k)}: no result")
            continue
        interval = result.scenario.interval
        texts = []
        for series in ("braid", "mptcp"):
            entry = result.series.get(series)
            if entry is None or not entry.runs:
                continue
            values = [measure(r.samples, events[0], events[1], interval) for r in entry.runs]
            each = ", ".join(missing if v is None else f"{v:.2f}" for v in values)
            stalls = sorted(longest_stall(r.samples, interval) for r in entry.runs)
            text = (
                f"{series} {_seconds(values)} (runs: {each} s), longest stall "
                f"{stalls[len(stalls) // 2]:.2f} s"
            )
            resent = sorted(r.retransmits for r in entry.runs if r.retransmits is not None)
            if retransmits and resent:
                text += f", {resent[len(resent) // 2]} TCP retransmissions"
            texts.append(text)
        parts.append(f"{_named(case, k)}: " + "; ".join(texts))
    return ". ".join(parts) + "."


def _back_after_return(
    samples: list[tuple[float, float]], cut: float, restore: float, interval: float
) -> float | None:
    level = window_mean(samples, 1.0, cut)
    return None if not level else recovery_time(samples, restore, 0.9 * level, interval)


def return_summary(case: Case, results: dict[str, ScenarioResult]) -> str:
    """Per scenario and series: seconds from the link's return to 90 % of the run's own
    level before the cut (each run), and the longest stall (median of the runs)."""
    return (
        "Back to 90 % of the run's level before the cut, counted from the link's return "
        "(median of the runs): "
        + _event_summary(case, results, _back_after_return, missing="never", retransmits=False)
    )


def cut_summary(case: Case, results: dict[str, ScenarioResult]) -> str:
    """Per scenario and series: the capacity lost after the cut (`cut_shortfall`), the
    longest stall and the TCP retransmissions (medians of the runs)."""
    return (
        "Capacity lost in the 3 s after the cut, in seconds of the run's own level during "
        "the cut (median of the runs): "
        + _event_summary(case, results, cut_shortfall, missing="-", retransmits=True)
    )


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
    Case(
        "res-return",
        "Resilience: a link cut and returned under TCP, CUBIC and BBR",
        "Issue 6: the 40 Mbit/s link of 20 Mbit/s 10 ms + 40 Mbit/s 30 ms is cut for 7 s under "
        "one CUBIC flow, one BBR flow and four CUBIC flows. Targets: longest stall under 1 s; "
        "full aggregate within 3 s after the return. One flow regains the returned capacity "
        "only as fast as its congestion control grows its window; four flows show how soon "
        "the tunnel itself offers it again.",
        ("res-return", "res-return-bbr", "res-return-p4"),
        labels=("one CUBIC flow", "one BBR flow", "four CUBIC flows"),
        summary=return_summary,
    ),
    Case(
        "res-cut",
        "Resilience: a link cut late in a clean session",
        "Issue 6: the same links, cut at 24 s of one CUBIC upload and one CUBIC download. "
        'By then `nack = "auto"` has turned NACK recovery off (after 3 clean seconds at the '
        "session's start), so the cut meets a tunnel that resends nothing on request, as a cut in a real session "
        "usually does. Targets: the flow keeps running, back on the remaining link within "
        "1 s (SPEC §7).",
        ("res-cut-late", "res-cut-late-down"),
        labels=("upload", "download"),
        summary=cut_summary,
    ),
    Case(
        "agg-equal",
        "Aggregation: 2 x 20 Mbit/s, CUBIC and BBR flows",
        "Issue 5: one TCP flow over two equal links, with CUBIC and with BBR (target: at least "
        "95 % of the links' summed solo goodput; braid >= MPTCP).",
        ("agg-equal-2x20", "agg-equal-2x20-bbr"),
    ),
    Case(
        "agg-unequal",
        "Aggregation: 10 Mbit/s 10 ms + 40 Mbit/s 40 ms",
        "Issue 5: unequal rate and delay, with CUBIC and with BBR (target: at least 90 %; "
        "braid >= MPTCP).",
        ("agg-unequal-10-40", "agg-unequal-10-40-bbr"),
    ),
    Case(
        "agg-four",
        "Aggregation: four links 10/20/30/40 Mbit/s, 5/10/20/40 ms",
        "Issue 5: four unequal links, with CUBIC and with BBR (target: at least 90 %; braid "
        ">= MPTCP).",
        ("agg-four", "agg-four-bbr"),
    ),
    Case(
        "agg-ref",
        "Aggregation: the issue's reference links",
        "Issue 5 names two sets of links on which the existing bonders were measured on this "
        "kind of machine (one CUBIC flow): 8 Mbit/s 5 ms + 32 Mbit/s 45 ms (kernel MPTCP "
        "36.3 Mbit/s, MLVPN 13.5, glorytun 9.8-34.7) and 15/25/5 Mbit/s with 10/30/60 ms "
        "(MPTCP 40.5, MLVPN 11.6, glorytun 8.8). braid and MPTCP on the same links, in the "
        "same run (target: braid >= MPTCP).",
        ("agg-ref-8-32", "agg-ref-three"),
    ),
    Case(
        "agg-down",
        "Aggregation: downloads (server -> client), CUBIC and BBR flows",
        "Issue 5: the remote portal sends; it learns each link's download rate from the local "
        "portal (PATH_INFO). One CUBIC flow and one BBR flow over 10 + 40 Mbit/s and over the "
        "four links (target: at least 90 %; braid >= MPTCP).",
        (
            "agg-unequal-10-40-down",
            "agg-four-down",
            "agg-unequal-10-40-down-bbr",
            "agg-four-down-bbr",
        ),
    ),
    Case(
        "agg-ack",
        'Aggregation: equalize = "ack" (the round trip of every TCP flow covers every path)',
        'Issue 5: with `equalize = "ack"` each portal holds the acknowledgements (and SYN-ACKs) '
        "of the TCP segments its egress received early until they would have come over the "
        "slowest path, so a BBR flow's smallest round trip covers every path from its first "
        'sample (with the default "bulk", only after its first PROBE_RTT, 10 s in). BBR '
        "over the four links both ways and over 10 + 40 Mbit/s down, CUBIC over the four "
        "links (target: at least 90 %; braid >= MPTCP); and the BBR upload again with the "
        'session\'s default "bulk" and a traffic class of its port given "ack".',
        (
            "agg-four-bbr-ack",
            "agg-four-bbr-class",
            "agg-four-down-bbr-ack",
            "agg-unequal-10-40-down-bbr-ack",
            "agg-four-ack",
        ),
    ),
    Case(
        "agg-norate",
        "Aggregation with no link rates configured",
        "Issue 5: every case above gives the local portal each link's rates, as a site that "
        "knows its links would, and a path's estimate never goes above its link's rate. A 4G "
        "or Starlink link has no fixed rate: here the portals are given none, so every path "
        "estimates its rate from feedback alone, from the portals' start (the portals keep "
        "what they learnt between the runs of a scenario without events, so its first braid "
        "run is their first traffic; a scenario with events starts them afresh for every "
        "run). The four links (CUBIC up, and BBR "
        "down: the remote portal learns no rate from the local portal either), 10 + 40 "
        "Mbit/s (CUBIC down), and a link whose rate drops from 40 to 10 Mbit/s or rises from "
        "10 to 40 (target: at least 90 %; braid >= MPTCP; a change followed within 2 s).",
        (
            "agg-four-norate",
            "agg-four-down-bbr-norate",
            "agg-unequal-10-40-down-norate",
            "agg-drop-norate",
            "agg-rise-norate",
        ),
    ),
    Case(
        "agg-drop",
        "Aggregation: a link drops from 40 to 10 Mbit/s",
        "Issue 5: does the flow follow within 2 s, without a stall?",
        ("agg-drop", "agg-drop-bbr"),
    ),
    Case(
        "agg-asym",
        "Aggregation: a narrow upload, and both directions at once",
        "Issue 5: a download over 2 x 20 Mbit/s links whose upload is 0.5 Mbit/s (ADSL-like), "
        "where the download's acknowledgements fill the upload; and an upload and a download "
        "at once over 2 x 20 Mbit/s (goodput: the two directions' sum), where each direction's "
        "acknowledgements and the tunnel's feedback queue behind the other's data. One CUBIC "
        "flow each way.",
        ("agg-narrow-upload", "agg-both-2x20"),
    ),
    Case(
        "agg-ping",
        "Aggregation: ping through the saturated tunnel",
        "Issue 5: ping p95 through the saturated tunnel at most the fastest link's RTT (20 ms) "
        "+ 50 ms, on 10 Mbit/s 10 ms + 40 Mbit/s 40 ms.",
        ("agg-ping", "agg-ping-bbr"),
    ),
    Case(
        "rec-loss",
        "Loss recovery: 2 x 20 Mbit/s, 20 ms, 2 % random loss",
        "Issue 7: how much of a TCP flow's goodput does braid's loss recovery win back on links "
        "that lose 2 % at random? NACK recovery with the loss predictor (`nack = true`, "
        "`loss_predictor = true`), without it (a gap is NACKed once every path passed it or "
        'after the reorder timeout), the defaults (`nack = "auto"`: on from the start, kept '
        "on while the paths lose; with the predictor), and off (`nack = false`).",
        ("rec-loss", "rec-loss-timeout", "rec-loss-auto", "rec-loss-off"),
        compare=True,
        labels=("NACK + predictor", "NACK, proof/timeout rule", "default (auto)", "recovery off"),
        summary=recovery_summary,
    ),
    Case(
        "rec-burst",
        "Loss recovery: 2 x 20 Mbit/s, 20 ms, 2 % loss in bursts of 4",
        "Issue 7: the same with bursty loss (Gilbert-Elliott, mean burst 4 packets, 2 % on "
        "average): NACK with the predictor, NACK without it, and off.",
        ("rec-burst", "rec-burst-timeout", "rec-burst-off"),
        compare=True,
        labels=("NACK + predictor", "NACK, proof/timeout rule", "recovery off"),
        summary=recovery_summary,
    ),
    Case(
        "rec-voice",
        "Loss recovery: voice-like UDP over 2 x 20 Mbit/s, 20 ms, 5 % loss",
        "Issue 7: 50 datagrams/s of 200 bytes (80 kbit/s) over links losing 5 % each: what "
        "residual loss reaches the receiver with NACK recovery, with FEC parity, with the "
        "redundant scheduler (a copy on each of the two paths), and with recovery off?",
        ("rec-voice", "rec-voice-fec", "rec-voice-redundant", "rec-voice-off"),
        compare=True,
        labels=("NACK", "FEC", "redundant scheduler", "recovery off"),
        summary=udp_loss_summary,
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
        text = f"{name} {_rate(entry.mbps)}"
        if eff is not None:
            text += f" ({eff * 100:.0f} % of that sum)"
        parts.append(text)
    if result.scenario.traffic.kind == "udp":
        for name, entry in result.series.items():
            lost = udp_lost(result, name)
            if lost is None:
                continue
            counted = [r for r in entry.runs if r.lost_packets is not None and r.packets]
            text = f"{name} lost {lost:.2f} % of the datagrams (median of runs"
            if counted:
                lost_sum = sum(r.lost_packets or 0 for r in counted)
                total = sum(r.packets or 0 for r in counted)
                text += f"; {lost_sum} of {total} over the runs"
            parts.append(text + ")")
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


def _rate(mbps: float) -> str:
    return f"{mbps:.1f} Mbit/s" if mbps >= 1.0 else f"{mbps * 1000:.0f} kbit/s"


def event_finding(result: ScenarioResult) -> str:
    """Throughput before, during and after the scenario's events, per series (with one
    event: before and after it), how soon it followed, and the longest stall."""
    events = result.scenario.events
    if not events:
        return ""
    first = events[0].at
    end = result.scenario.duration
    second = events[1].at if len(events) > 1 else None
    interval = result.scenario.interval
    spans = [(1.0, first), (first + 1.0, second if second is not None else end)]
    if second is not None:
        spans.append((second + 3.0, end))

    def levels(entry: SeriesResult) -> list[float | None]:
        windows = []
        for start, stop in spans:
            values = [window_mean(r.samples, start, stop) for r in entry.runs]
            known = [v for v in values if v is not None]
            windows.append(sum(known) / len(known) if known else None)
        return windows

    # What the links carried alone after the (first) event, summed: a series whose own
    # level after it is low (a flow stuck on the links that were left) then shows it.
    afters = [levels(e)[1] for n, e in result.series.items() if n.startswith("link-") and e.runs]
    known = [a for a in afters if a is not None]
    links_after = sum(known) if known and len(known) == len(afters) else None
    lines = []
    for name, entry in result.series.items():
        if not entry.runs:
            continue
        windows = levels(entry)
        text = " → ".join("-" if v is None else f"{v:.1f}" for v in windows)
        if second is not None:
            what = "before, during, after; the first second after each event left out"
        else:
            what = "before, after the event; the first second after it left out"
        line = f"- {name}: {text} Mbit/s ({what})"
        before, during = windows[0], windows[1]
        if before and during:
            down = [recovery_time(r.samples, first, 0.8 * during, interval) for r in entry.runs]
            line += f"; reached 80 % of the level after the event {_seconds(down)} after it"
            if links_after and not name.startswith("link-"):
                full = [
                    recovery_time(r.samples, first, 0.8 * links_after, interval) for r in entry.runs
                ]
                line += (
                    f" ({100 * during / links_after:.0f} % of the links' {links_after:.1f} "
                    f"alone after it; 80 % of theirs {_seconds(full)} after it)"
                )
            if second is not None:
                back = [
                    recovery_time(r.samples, second, 0.9 * before, interval) for r in entry.runs
                ]
                line += f", 90 % of the level before {_seconds(back)} after the second event"
        stalls = sorted(longest_stall(r.samples, interval) for r in entry.runs)
        line += f"; longest stall {stalls[len(stalls) // 2]:.2f} s (median of runs)"
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
    cases = [c for key in only for c in CASES if c.key == key] if only else list(CASES)
    if not cases:
        raise LabError(f"no such case; cases: {', '.join(c.key for c in CASES)}")
    img_dir = out.parent / "img"
    results: dict[str, ScenarioResult] = {}
    started = time.time()
    # With --only, the sections of the cases not run this time are kept from the report.
    earlier = out.read_text() if out.exists() else ""
    hand = hand_notes(earlier)
    kept = old_sections(earlier) if only else []
    stamp = provenance()
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
        if case.summary is not None and all(n in results for n in case.scenarios):
            console.print(case.summary(case, results), markup=False, highlight=False)
        # Written after every case: an interrupted run leaves the cases done so far.
        done = [c for c in cases if all(n in results for n in c.scenarios)]
        minutes = (time.time() - started) / 60
        fresh = {c.title: _section(c, results, img_dir, out.parent) + stamp for c in done}
        header = _header(minutes, quick)
        if hand:
            header += hand + "\n\n"
        if kept:
            header += (
                'Sections marked "kept from an earlier run" or under an "Earlier run" heading'
                " were not regenerated by this run (`--only`).\n\n"
            )
        if len(done) < len(cases):
            header += f"(Written after {len(done)} of {len(cases)} cases.)\n\n"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(header + assemble(fresh, kept, [c.title for c in CASES]))
    console.print(f"wrote {out} and plots in {img_dir}")
    notes = [n for r in results.values() for n in r.notes]
    for note in notes:
        console.print(f"[yellow]note:[/yellow] {note}")
    return 1 if notes else 0


NOTES_BEGIN: Final = "<!-- notes -->"
NOTES_END: Final = "<!-- /notes -->"
"""A report's hand-written notes go between these two lines, under the header: a later
run, whole or partial, carries them over as they are."""


def hand_notes(report: str) -> str:
    """The notes block of an earlier report, markers included ("" when it has none)."""
    begin = report.find(NOTES_BEGIN)
    end = report.find(NOTES_END, begin)
    if begin < 0 or end < 0:
        return ""
    return report[begin : end + len(NOTES_END)]


def provenance() -> str:
    """The line that ends every section: when, and at which braid (the git commit when
    braid runs from a checkout, with "+ local changes" when the package's own files,
    scenarios included, differ from it)."""
    where = f"braid {braid.__version__}"
    source = Path(braid.__file__).resolve().parent

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=source, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        # Only braid's own files count: a report and its plots written by the run before
        # (docs/) do not change what is measured.
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".")
    except (OSError, subprocess.SubprocessError):
        commit = ""
    if commit:
        where += f" at {commit}" + (" + local changes" if dirty else "")
    return f"\n*Measured {time.strftime('%Y-%m-%d %H:%M %Z')}, {where}.*\n"


def old_sections(report: str) -> list[tuple[str, str]]:
    """The sections of an earlier report, in order, as (bare title, text): a "## "
    section's title without a "(...) " label, "" for a "# " part heading. Sections of
    the last run are labelled "kept from an earlier run"."""
    lines = report.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("## ")), None)
    if start is None:
        return []
    chunks: list[list[str]] = []
    for line in lines[start:]:
        if line.startswith(("## ", "# ")):
            chunks.append([line])
        elif chunks:
            chunks[-1].append(line)
    out: list[tuple[str, str]] = []
    for chunk in chunks:
        heading = chunk[0]
        while len(chunk) > 1 and chunk[-1].strip() in ("", "---"):
            chunk.pop()
        if heading.startswith("# "):
            out.append(("", "\n".join(chunk)))
            continue
        title = heading[3:].strip()
        bare = title.split(") ", 1)[1] if title.startswith("(") and ") " in title else title
        if not title.startswith("("):
            chunk = [f"## (kept from an earlier run) {title}", *chunk[1:]]
        out.append((bare, "\n".join(chunk)))
    return out


def assemble(fresh: dict[str, str], kept: list[tuple[str, str]], order: list[str]) -> str:
    """The report's sections: one per case in `order`, this run's where it has one (by
    title), else the earlier report's; then what else the earlier report had (a case no
    longer run, "Earlier run" parts), as it was."""
    earlier: dict[str, str] = {}
    rest: list[str] = []
    for title, text in kept:
        if title in fresh:
            continue
        if title and title in order and title not in earlier:
            earlier[title] = text
        else:
            rest.append(text)
    sections = [
        fresh.get(title) or earlier[title] for title in order if title in fresh or title in earlier
    ]
    if rest:
        sections.append("---\n\n" + "\n\n".join(rest))
    return "\n\n".join(section.rstrip("\n") + "\n" for section in sections)


def _header(minutes: float, quick: bool) -> str:
    cpu = os.cpu_count() or 0
    return (
        "# braid evaluation\n\n"
        f"Generated by `braid lab eval{' --quick' if quick else ''}` (braid {braid.__version__}) "
        f"on {time.strftime('%Y-%m-%d')}, Linux {platform.release()}, {cpu} CPU cores; the whole "
        f"run took {minutes:.0f} minutes. Every number below comes from that run, except in the "
        "sections marked as kept or earlier: regenerate this file with "
        "`sudo .venv/bin/python -m braid lab eval`.\n\n"
        "Method (see docs/lab.md): client, local portal, link emulator, remote portal and server "
        "are network namespaces on one host; each link is shaped by tbf (rate, 50 ms queue), "
        "braid's own AF_PACKET relay (one-way delay, bursty loss) and nftables (random loss, "
        "cuts). Traffic is one iperf3 TCP flow with CUBIC (BBR, or UDP datagrams, where a case "
        "says so), sampled every 0.5 s at the receiver. Each series runs "
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
    parts = [f"{key} = {value!r}" for key, value in braid_settings.items()]
    for table in result.scenario.classes:
        fields = ", ".join(f"{k} = {v!r}" for k, v in table.items() if k != "name")
        parts.append(f"class {table.get('name')!r} ({fields})")
    if not result.scenario.rate_hints:
        parts.append("no link rates configured (every path's rate estimated from feedback)")
    return ", ".join(parts) if parts else "braid's defaults"


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
        events = event_finding(result)
        if events:
            parts.append(events + "\n")
        for note in result.notes:
            parts.append(f"> note: {note}\n")
    if case.summary is not None and present:
        parts.append(f"**Summary.** {case.summary(case, results)}\n")
    image = img_dir / f"eval-{case.key}.png"
    panels: list[tuple[str, list[tuple[str, SeriesResult]], list[tuple[float, str]]]]
    if case.compare:
        curves: list[tuple[str, SeriesResult]] = []
        for result in present:
            entry = result.series.get("braid")
            if entry is not None:
                curves.append((result.scenario.name, entry))
        # The events, when every scenario has the same ones.
        shared = {tuple(r.event_times) for r in present}
        marks = list(shared.pop()) if len(shared) == 1 else []
        panels = [(f"{case.title}: braid", curves, marks)]
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
