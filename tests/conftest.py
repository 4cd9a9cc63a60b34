"""Suite-wide hooks for the tests marked `level` (a throughput or timing level): a failed
one runs again, and one the host starved on every run is reported skipped, with why
(its steal above `braid.lab.experiment.STEAL_LIMIT`)."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from braid.lab.experiment import STEAL_LIMIT, host_fidelity
from braid.lab.netns import host_cpu_ticks

LEVEL_RERUNS = 2
"""A `level` test asserts a throughput or timing level with a margin for a loaded machine.
On a host that steals CPU time, a window of starvation (seconds to minutes) makes such a
test miss its level now and then, whatever the margin (2026-12-01: the emulator's own rate
test at 16 of 20 Mbit/s in a suite, passing alone right after). It runs again after a
pause, up to twice: a wrong behaviour fails every run; pytest's summary lists every rerun
("R", "rerun")."""
LEVEL_RERUN_DELAY = 15.0

_ATTEMPTS = pytest.StashKey[list[tuple[bool, float | None]]]()
"""Per `level` test: (failed, steal percent or None) of each run so far."""
_TICKS = pytest.StashKey[tuple[int, int, int] | None]()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("level") is not None:
            item.add_marker(pytest.mark.flaky(reruns=LEVEL_RERUNS, reruns_delay=LEVEL_RERUN_DELAY))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, Any]:
    if item.get_closest_marker("level") is not None:
        item.stash[_TICKS] = host_cpu_ticks()
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A `level` test's run: note whether it failed and how much CPU time the host took;
    when every run failed and every one was starved, the last is reported skipped (the
    level could not be judged on this host), else as it came out."""
    report = yield
    if call.when != "call" or item.get_closest_marker("level") is None:
        return report
    host = host_fidelity(item.stash.get(_TICKS, None), host_cpu_ticks(), None)
    steal = host.get("steal_percent")
    attempts = item.stash.setdefault(_ATTEMPTS, [])
    attempts.append((report.failed, steal))
    if steal is not None:
        report.sections.append(
            ("host", f"the hypervisor took {steal:.1f} % of the CPU time (steal) during this run")
        )
    last = len(attempts) > LEVEL_RERUNS
    starved = [s is not None and s > STEAL_LIMIT for _, s in attempts]
    if report.failed and last and all(failed for failed, _ in attempts) and all(starved):
        steals = ", ".join(f"{s:.0f} %" for _, s in attempts if s is not None)
        report.outcome = "skipped"
        report.longrepr = (
            str(item.path),
            item.location[1] or 0,
            f"Skipped: level not judged: the host was starved in each of {len(attempts)} runs"
            f" (steal {steals}, limit {STEAL_LIMIT:g} %)",
        )
    return report
