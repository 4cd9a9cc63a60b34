"""``braid lab demo``: what braid does, in one command and under three minutes.

Two unequal links (20 Mbit/s 10 ms and 40 Mbit/s 30 ms): one TCP flow over each link alone,
over kernel MPTCP, and through braid; then a braid flow during which link 2 is cut and
restored. Prints the table, the cut's effect and where the plot is.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from braid.lab.experiment import ScenarioResult, run_scenarios
from braid.lab.netns import check_environment
from braid.lab.report import (
    cut_shortfall,
    longest_stall,
    plot,
    recovery_time,
    rich_table,
    window_mean,
    write_json,
)
from braid.lab.scenario import load_scenario


def cut_summary(cut: ScenarioResult, solo_remaining: float | None) -> list[str]:
    """Lines describing throughput before, during and after the cut in ``cut``'s braid run."""
    series = cut.series.get("braid")
    events = [e for e in cut.scenario.events if e.action in ("cut", "restore")]
    if series is None or not series.runs or len(events) < 2:
        return ["link cut: no braid result"]
    samples = series.runs[0].samples
    interval = cut.scenario.interval
    cut_at, restore_at = events[0].at, events[1].at
    end = cut.scenario.duration
    before = window_mean(samples, 1.0, cut_at)
    during = window_mean(samples, cut_at + 1.0, restore_at)
    after = window_mean(samples, restore_at + 3.0, end)
    lines = [
        f"before the cut ({1:g}-{cut_at:g} s): {_mbps(before)}",
        f"link {events[0].link} cut      ({cut_at + 1:g}-{restore_at:g} s): {_mbps(during)}"
        + (f"  (the other link alone: {solo_remaining:.1f} Mbit/s)" if solo_remaining else ""),
        f"restored       ({restore_at + 3:g}-{end:g} s): {_mbps(after)}",
    ]
    if solo_remaining:
        recovered = recovery_time(samples, cut_at, 0.8 * solo_remaining, interval)
        lines.append(
            "flow kept running; back to 80 % of the remaining link "
            + (f"{recovered:.2f} s after the cut" if recovered is not None else "never")
        )
    lost = cut_shortfall(samples, cut_at, restore_at, interval)
    if lost is not None:
        lines.append(
            f"capacity lost in the 3 s after the cut: {lost:.2f} s of the level during the cut"
        )
    if before:
        returned = recovery_time(samples, restore_at, 0.9 * before, interval)
        lines.append(
            "full aggregate (90 % of before) "
            + (f"{returned:.2f} s after the restore" if returned is not None else "not reached")
        )
    lines.append(
        f"longest stall (samples under 10 % of the median): {longest_stall(samples, interval):.2f} s"
    )
    stalled = [t for t, v in samples if v < 0.05]
    if stalled:
        lines.append(
            f"[yellow]stalled samples (< 0.05 Mbit/s) at {', '.join(f'{t:.2f}' for t in stalled[:8])} s[/yellow]"
        )
    return lines


def _mbps(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} Mbit/s"


def run_demo(
    *,
    plot_path: Path,
    json_path: Path | None,
    console: Console,
    progress: Callable[[str], None],
) -> int:
    """Run the demo; return the exit code."""
    main = load_scenario("demo")
    cut = load_scenario("demo-cut")
    check_environment(mptcp=True)
    progress(f"demo: links {', '.join(link.describe() for link in main.links)}")
    results = run_scenarios([main, cut], progress=progress)
    main_result, cut_result = results
    console.print(
        rich_table(main_result, title="braid lab demo — one TCP flow (cubic), client → server")
    )
    remaining = None
    events = [e for e in cut.events if e.action == "cut"]
    if events:
        other = 1 if events[0].link != 1 else 2
        solo = main_result.series.get(f"link-{other}")
        remaining = solo.mbps if solo and solo.runs else None
    console.print(
        f"[bold]link cut under a running braid flow[/bold] ({cut.events[0].describe()} at {cut.events[0].at:g} s, restored at {cut.events[-1].at:g} s)"
    )
    for line in cut_summary(cut_result, remaining):
        console.print(f"  {line}")
    notes = main_result.notes + cut_result.notes
    for note in notes:
        console.print(f"[yellow]note:[/yellow] {note}")
    plot(
        results,
        plot_path,
        titles=["each link alone, MPTCP, braid", "braid: link 2 cut and restored"],
    )
    console.print(f"plot: {plot_path.resolve()}")
    if json_path is not None:
        write_json(results, json_path)
        console.print(f"json: {json_path}")
    return 1 if notes else 0
