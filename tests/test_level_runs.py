"""The suite's handling of `level` tests (tests/conftest.py), run on small inner suites
with pytester: the host's steal is faked, pytest-rerunfailures is the real one."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

FAKE_TICKS = '''
import itertools, os
_calls = itertools.count()

def host_cpu_ticks():
    """Each call 100 ticks on; the steal of the n-th run from STEALS ("40,3,..."), one
    run being two calls (before and after)."""
    n = next(_calls)
    steals = [float(v) for v in os.environ["STEALS"].split(",")]
    stolen = sum(steals[: (n + 1) // 2])
    return (0, int(stolen), 100 * n)

LEVEL_RERUN_DELAY = 0.0
'''

LEVEL_TEST = """
import os
import pytest

RUNS = []

@pytest.mark.level
def test_a_level():
    RUNS.append(1)
    results = os.environ["RESULTS"].split(",")
    assert results[len(RUNS) - 1] == "pass", f"level missed in run {len(RUNS)}"
"""


@pytest.fixture
def inner(pytester: pytest.Pytester) -> pytest.Pytester:
    """An inner suite with this suite's conftest (its reading of the host faked) and one
    `level` test whose runs pass or fail as RESULTS says."""
    conftest = (Path(__file__).parent / "conftest.py").read_text()
    pytester.makeconftest(conftest + FAKE_TICKS)
    pytester.makeini("[pytest]\nmarkers =\n    level: a level\n")
    pytester.makepyfile(test_inner=LEVEL_TEST)
    return pytester


def _outcomes(result: pytest.RunResult) -> dict[str, int]:
    return {k: v for k, v in result.parseoutcomes().items() if k not in ("warning", "warnings")}


def _run(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, results: str, steals: str
) -> pytest.RunResult:
    monkeypatch.setenv("RESULTS", results)
    monkeypatch.setenv("STEALS", steals)
    return inner.runpytest_subprocess("-rsR")


def test_a_level_missed_on_a_quiet_host_fails_after_its_reruns(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = _run(inner, monkeypatch, "fail,fail,fail", "1,2,3")
    assert _outcomes(result) == dict(failed=1, rerun=2)
    result.stdout.fnmatch_lines(["*took 3.0 % of the CPU time (steal) during this run*"])


def test_a_level_missed_once_passes_on_its_rerun(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = _run(inner, monkeypatch, "fail,pass,pass", "1,1,1")
    assert _outcomes(result) == dict(passed=1, rerun=1)


def test_a_level_missed_in_every_run_of_a_starved_host_is_skipped_with_why(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = _run(inner, monkeypatch, "fail,fail,fail", "40,17,35")
    assert _outcomes(result) == dict(skipped=1, rerun=2)
    result.stdout.fnmatch_lines(
        ["*level not judged: the host was starved in each of 3 runs (steal 40 %, 17 %, 35 %*"]
    )


def test_one_quiet_run_among_starved_ones_makes_the_miss_a_failure(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = _run(inner, monkeypatch, "fail,fail,fail", "40,2,35")
    assert _outcomes(result) == dict(failed=1, rerun=2)
