"""What the lab says of its own faithfulness in a run: the machine's CPU use and steal
(/proc/stat) and the emulator's lateness, and when it flags a run as starved."""

from __future__ import annotations

import itertools
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from braid.lab import experiment
from braid.lab.cli import main
from braid.lab.experiment import (
    LATE_LIMIT_MS,
    STARVED_REDOS,
    STEAL_LIMIT,
    host_fidelity,
    unfaithful,
)
from braid.lab.netns import host_cpu_ticks
from braid.lab.traffic import RunResult


def test_host_ticks_grow_and_steal_is_part_of_the_total() -> None:
    own_before, before = os.times(), host_cpu_ticks()
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:  # (some busy time of our own)
        pass
    after, own_after = host_cpu_ticks(), os.times()
    assert before is not None and after is not None
    busy, steal, total = (a - b for a, b in zip(after, before, strict=True))
    assert total > 0 and 0 <= steal <= total and busy <= total
    # The machine was busy at least as long as this process was (less a tick of rounding
    # at each end), as the kernel counts it per process.
    own = (own_after.user + own_after.system - own_before.user - own_before.system) * os.sysconf(
        "SC_CLK_TCK"
    )
    assert own >= 10 and busy >= own - 2, (busy, own)


def test_fidelity_is_shares_of_the_ticks_between_and_the_lateness() -> None:
    host = host_fidelity((100, 10, 1_000), (400, 60, 2_000), 0.35)
    assert host == {"cpu_percent": 30.0, "steal_percent": 5.0, "emulator_late_ms": 0.35}
    # Unknown readings are left out, not guessed.
    assert host_fidelity(None, (1, 1, 1), None) == {}
    assert host_fidelity((1, 1, 5), (1, 1, 5), None) == {}


def test_a_run_is_flagged_for_steal_or_a_late_emulator_and_says_which() -> None:
    run = RunResult(mbps=40.0, samples=[])
    assert unfaithful(run) is None  # (nothing known: nothing flagged)
    run.host = {
        "cpu_percent": 70.0,
        "steal_percent": STEAL_LIMIT,
        "emulator_late_ms": LATE_LIMIT_MS,
    }
    assert unfaithful(run) is None  # (at the limits)
    run.host["steal_percent"] = 17.0
    text = unfaithful(run)
    assert text is not None and "17 % of the CPU time (steal)" in text and "late" not in text
    run.host["emulator_late_ms"] = 10.0
    text = unfaithful(run)
    assert text is not None and "steal" in text and "10.0 ms late" in text
    assert run.to_json()["host"] == {
        "cpu_percent": 70.0,
        "steal_percent": 17.0,
        "emulator_late_ms": 10.0,
    }


STARVED_SCENARIO = """
duration = 2
interval = 0.5
repeat = {repeat}
series = ["link-1"]
traffic = "tcp"
direction = "up"
cc = "cubic"

[[link]]
rate = "10mbit"
delay = "5ms"
"""


def _fake_steal(monkeypatch: pytest.MonkeyPatch, steals: list[float]) -> None:
    """The lab's reading of the hypervisor's steal (which no test can cause) as `steals`
    says, one value per run (the last repeats); everything else in the run is real."""
    calls = itertools.count()

    def ticks() -> tuple[int, int, int]:
        n = next(calls)  # (two calls a run: before and after)
        stolen = sum(steals[min(k, len(steals) - 1)] for k in range((n + 1) // 2))
        return 0, int(stolen), 100 * n

    monkeypatch.setattr(experiment, "host_cpu_ticks", ticks)


def _run_starved(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    steals: list[float],
    *,
    repeat: int,
) -> tuple[str, list[dict[str, Any]]]:
    """`braid lab run` of STARVED_SCENARIO with the steal faked (`_fake_steal`): what it
    printed, and link-1's runs from its --json."""
    _fake_steal(monkeypatch, steals)
    path = tmp_path / "s.toml"
    path.write_text(STARVED_SCENARIO.format(repeat=repeat))
    out = tmp_path / "r.json"
    assert main(["run", str(path), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    print(printed)
    runs: list[dict[str, Any]] = json.loads(out.read_text())["series"]["link-1"]["runs"]
    return printed, runs


@pytest.mark.root
def test_a_run_on_a_starved_host_is_not_counted_and_runs_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    printed, runs = _run_starved(tmp_path, capsys, monkeypatch, [40.0, 2.0], repeat=2)
    assert printed.count("not counted, run again") == 1
    assert "40 % of the CPU time (steal)" in printed
    assert len(runs) == 2
    assert runs[0]["host"]["starved_runs_dropped"] == 1 and runs[0]["host"]["steal_percent"] == 2
    assert "starved_runs_dropped" not in runs[1]["host"]
    assert all(run["mbps"] > 5 for run in runs)
    assert "the host was starved" not in printed


@pytest.mark.root
def test_a_run_starved_each_time_is_kept_and_flagged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    printed, runs = _run_starved(tmp_path, capsys, monkeypatch, [30.0], repeat=1)
    assert printed.count("not counted, run again") == STARVED_REDOS
    assert "the host was starved: the hypervisor took 30 % of the CPU time (steal)" in printed
    (run,) = runs
    assert run["host"]["starved_runs_dropped"] == STARVED_REDOS
    assert run["host"]["steal_percent"] == 30
