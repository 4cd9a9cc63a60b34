"""``braid lab record``: gap traces of real lab runs, the input of ``braid train`` (issue 7).

Each scenario runs its braid series only (no links, no MPTCP), one ``braid up`` pair per
run, with two session settings forced on top of the scenario's [braid] table:

- ``gap_trace``: each portal appends its egress's gap samples to its own file,
  ``DIR/<scenario>-<run>-<role>.jsonl`` (``portals.role_trace_path``; two processes never
  append to one file). A file of an earlier recording with the same name is replaced.
- ``nack = false``: the labels are the truth. With NACK on, a retransmission can fill a
  gap whose original was merely late, and that gap would be labelled a loss.

Scenarios with the same number of links share one lab (topology and emulator).
"""

from __future__ import annotations

import contextlib
import json
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from rich.console import Console

from braid.lab.experiment import Lab
from braid.lab.netns import LabSetupError
from braid.lab.portals import ROLES, role_trace_path
from braid.lab.scenario import Scenario

Progress = Callable[[str], None]


@dataclass(frozen=True)
class TraceFile:
    """One portal's trace of one run: how many samples, how many of them losses (y = 1)."""

    path: Path
    samples: int
    positives: int

    def describe(self) -> str:
        """``DIR/x-1-remote.jsonl: 5120 samples, 4096 positives (80.0 %)``."""
        share = f" ({100.0 * self.positives / self.samples:.1f} %)" if self.samples else ""
        return f"{self.path}: {self.samples} samples, {self.positives} positives{share}"


def count_trace(path: Path) -> TraceFile:
    """Samples and positives of a trace file (a missing file: none; a portal that saw no
    gap writes nothing)."""
    samples = positives = 0
    try:
        text = path.read_text()
    except FileNotFoundError:
        return TraceFile(path, 0, 0)
    for line in text.splitlines():
        if not line.strip():
            continue
        samples += 1
        # `braid train` names bad lines; here they only count as samples.
        with contextlib.suppress(ValueError, AttributeError):
            positives += json.loads(line).get("y") == 1
    return TraceFile(path, samples, positives)


def check_out_dir(out: Path) -> None:
    """Create ``out`` if needed and check that files can be written in it (LabSetupError,
    exit code 2, otherwise)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise LabSetupError(f"--out {out}: not a directory; expected a directory") from None
    except OSError as exc:
        raise LabSetupError(f"--out {out}: cannot create it ({exc.strerror})") from None
    try:
        with tempfile.NamedTemporaryFile(dir=out, prefix=".braid-record-"):
            pass
    except OSError as exc:
        raise LabSetupError(f"--out {out}: cannot write there ({exc.strerror})") from None


def file_stem(name: str) -> str:
    """A scenario name as part of a file name (anything but letters, digits, '.', '_'
    and '-' becomes '_')."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "scenario"


def recording(scenario: Scenario, trace: Path, *, duration: float | None = None) -> Scenario:
    """One recording run of ``scenario``: its braid series once, NACK off, gap traces on
    (``trace`` is the shared name; each portal adds its role)."""
    braid = {**scenario.braid, "nack": False, "gap_trace": str(trace)}
    return replace(
        scenario,
        series=("braid",),
        repeat=1,
        duration=scenario.duration if duration is None else duration,
        braid=braid,
    )


def record(
    scenarios: list[Scenario],
    out: Path,
    *,
    repeat: int | None = None,
    duration: float | None = None,
    console: Console,
    progress: Progress,
) -> int:
    """Record every scenario ``repeat`` times (default: the scenario's own repeat) into
    ``out``; prints each file's samples and positives. 0 if every run worked, 1 if not."""
    check_out_dir(out)
    groups: dict[int, list[Scenario]] = {}
    for scenario in scenarios:
        groups.setdefault(len(scenario.links), []).append(scenario)
    numbers: dict[str, int] = {}
    files: list[TraceFile] = []
    failed: list[str] = []
    for n_links, group in groups.items():
        with Lab(n_links, progress=progress, mptcp=False) as lab:
            for scenario in group:
                stem = file_stem(scenario.name)
                runs = scenario.repeat if repeat is None else repeat
                for index in range(runs):
                    numbers[stem] = number = numbers.get(stem, 0) + 1
                    base = out / f"{stem}-{number}.jsonl"
                    paths = [role_trace_path(base, role) for role in ROLES]
                    for path in paths:
                        try:
                            path.unlink(missing_ok=True)
                        except OSError as exc:
                            raise LabSetupError(
                                f"{path}: cannot replace it ({exc.strerror})"
                            ) from None
                    progress(f"{scenario.name} run {index + 1}/{runs}: recording to {base.stem}-*")
                    result = lab.run(recording(scenario, base, duration=duration))
                    failed += [f"{scenario.name} run {index + 1}: {n}" for n in result.notes]
                    for path in paths:
                        trace = count_trace(path)
                        files.append(trace)
                        console.print(trace.describe(), markup=False, highlight=False)
    samples = sum(f.samples for f in files)
    positives = sum(f.positives for f in files)
    console.print(
        f"recorded {len(files)} files: {samples} samples, {positives} positives"
        + (f" ({100.0 * positives / samples:.1f} %)" if samples else ""),
        markup=False,
        highlight=False,
    )
    for note in failed:
        console.print(f"[yellow]note:[/yellow] {note}")
    return 1 if failed else 0
