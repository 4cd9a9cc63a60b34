"""``braid train``: fit the loss predictor (issue 7) on gap traces.

Input: JSON lines ``{"x": [5 numbers], "y": 0 or 1}``, written by a portal with the
session setting ``gap_trace`` (``braid lab record`` records them in the lab). Samples of
one gap are correlated (up to 8 per gap, one every ~2 ms of its life) and follow each
other in a file, so data is held out by *file*, never by random line:

- files are sorted by name, empty ones skipped, and ``round(n x holdout)`` of them (at
  least one, never all) held out, evenly spread: every 4th file for 0.25;
- a single file is cut into 20 blocks of consecutive lines and the blocks are held out
  the same way.

The decision threshold is chosen on the training data unless given: the highest
precision with recall >= 0.5. A false NACK costs a duplicate packet and capacity; a
missed loss only waits for the proof or timeout rule, so precision comes first.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from braid.core.predictor import (
    N_FEATURES,
    LossModel,
    default_model,
    fit,
    precision_recall,
)

MIN_RECALL = 0.5
"""The threshold is chosen for the highest precision with at least this recall."""
BLOCKS = 20
"""A single trace file is held out in this many blocks of consecutive lines."""
EXPECTED = f'expected one JSON object per line, {{"x": [{N_FEATURES} numbers], "y": 0 or 1}}'


class TraceError(ValueError):
    """A trace that cannot be used; the message is one line naming the file (and line)."""


@dataclass
class Part:
    """A unit of the train / held-out split: one file, or a block of a single file."""

    name: str
    xs: list[list[float]]
    ys: list[int]

    @property
    def positives(self) -> int:
        """Samples labelled loss."""
        return sum(self.ys)


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def read_trace(path: Path) -> Part:
    """Read one JSONL trace file; TraceError names the file and the bad line."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise TraceError(f"{path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise TraceError(f"{path}: not a text file; {EXPECTED}") from None
    xs: list[list[float]] = []
    ys: list[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            reason = getattr(exc, "msg", str(exc))
            raise TraceError(f"{path}:{number}: not JSON ({reason}); {EXPECTED}") from None
        x = record.get("x") if isinstance(record, dict) else None
        y = record.get("y") if isinstance(record, dict) else None
        if not (isinstance(x, list) and len(x) == N_FEATURES and all(_number(v) for v in x)):
            raise TraceError(f"{path}:{number}: x is not {N_FEATURES} finite numbers; {EXPECTED}")
        if not (isinstance(y, int) and not isinstance(y, bool) and y in (0, 1)):
            raise TraceError(f"{path}:{number}: y is {json.dumps(y)}, not 0 or 1; {EXPECTED}")
        xs.append([float(v) for v in x])
        ys.append(y)
    return Part(str(path), xs, ys)


def _held_out(count: int, holdout: float) -> list[bool]:
    """Which of `count` parts are held out: round(count x holdout), at least one and never
    all (if holdout > 0), evenly spread (for 0.25: the 4th, 8th, ...)."""
    if holdout <= 0 or count < 2:
        return [False] * count
    n = min(count - 1, max(1, round(count * holdout)))
    return [(i + 1) * n // count > i * n // count for i in range(count)]


def split(traces: list[Part], holdout: float) -> tuple[list[Part], list[Part]]:
    """Training and held-out parts (see the module doc): by file, or by blocks of lines."""
    parts = sorted((t for t in traces if t.ys), key=lambda t: t.name)
    if len(parts) == 1:
        one = parts[0]
        n = len(one.ys)
        blocks = min(BLOCKS, n)
        bounds = [k * n // blocks for k in range(blocks + 1)]
        parts = [
            Part(f"{one.name} samples {a + 1}-{b}", one.xs[a:b], one.ys[a:b])
            for a, b in itertools.pairwise(bounds)
        ]
    flags = _held_out(len(parts), holdout)
    train = [p for p, held in zip(parts, flags, strict=True) if not held]
    test = [p for p, held in zip(parts, flags, strict=True) if held]
    return train, test


def choose_threshold(
    model: LossModel, xs: list[list[float]], ys: list[int], min_recall: float = MIN_RECALL
) -> float:
    """The threshold with the highest precision among those with recall >= min_recall
    (ties: the higher recall); it is the lowest probability the model then calls a loss."""
    positives = sum(ys)
    if not positives:
        raise ValueError("no loss samples to choose a threshold on")
    ranked = sorted(zip((model.probability(x) for x in xs), ys, strict=True), reverse=True)
    best: tuple[float, float, float] | None = None  # precision, recall, threshold
    tp = fp = 0
    for i, (p, y) in enumerate(ranked):
        tp += y
        fp += 1 - y
        if i + 1 < len(ranked) and ranked[i + 1][0] == p:
            continue  # a threshold takes every sample of equal probability
        recall = tp / positives
        if recall >= min_recall:
            candidate = (tp / (tp + fp), recall, p)
            if best is None or candidate[:2] > best[:2]:
                best = candidate
    assert best is not None  # the lowest threshold has recall 1
    return best[2]


def _merge(parts: list[Part]) -> tuple[list[list[float]], list[int]]:
    xs: list[list[float]] = []
    ys: list[int] = []
    for part in parts:
        xs += part.xs
        ys += part.ys
    return xs, ys


def _balance(label: str, parts: list[Part], unit: str) -> str:
    n = sum(len(p.ys) for p in parts)
    pos = sum(p.positives for p in parts)
    share = f" ({100.0 * pos / n:.1f} %)" if n else ""
    return f"{label}: {len(parts)} {unit}, {n} samples, {pos} losses{share}, {n - pos} late"


def _pr(model: LossModel, xs: list[list[float]], ys: list[int]) -> str:
    if not ys:
        return "-"
    precision, recall = precision_recall(model, xs, ys)
    return f"precision {precision:.3f}  recall {recall:.3f}"


def train(
    paths: list[Path],
    out: Path,
    *,
    holdout: float = 0.25,
    threshold: float | None = None,
    say: Callable[[str], None] = print,
) -> LossModel:
    """Read, split, fit, choose the threshold, report through `say`, write `out`.

    TraceError for unusable input (bad line, no losses to learn); OSError if `out`
    cannot be written."""
    traces = [read_trace(path) for path in paths]
    for trace in traces:
        if not trace.ys:
            say(f"{trace.name}: no samples, skipped")
    train_parts, test_parts = split(traces, holdout)
    xs, ys = _merge(train_parts)
    hx, hy = _merge(test_parts)
    if not ys:
        raise TraceError("no samples in the trace files; record some with `braid lab record`")
    if not any(ys) or all(ys):
        kind = "loss (y = 1)" if not any(ys) else "late (y = 0)"
        raise TraceError(
            f"the training data has no {kind} samples; record scenarios with both loss and"
            " reordering (say rec-loss and an unequal-delay one with jitter)"
        )
    unit = "blocks" if sum(1 for t in traces if t.ys) == 1 else "files"
    say(_balance("training", train_parts, unit))
    if test_parts:
        say(_balance("held out", test_parts, unit))
        for part in test_parts:
            say(f"  held out: {part.name}")
    else:
        say("held out: none (--holdout 0, or a single trace too short to split)")
    say(f"fitting logistic regression on {len(ys)} samples ...")
    model = fit(xs, ys)
    if threshold is None:
        threshold = choose_threshold(model, xs, ys)
        say(
            f"threshold {threshold:.4f}: chosen on the training data, the highest precision"
            f" with recall >= {MIN_RECALL:g} (a false NACK costs a duplicate packet and"
            " capacity, a missed loss only waits for the proof/timeout rule)"
        )
    else:
        say(f"threshold {threshold:.4f}: given (--threshold)")
    model = LossModel(model.weights, threshold)
    shipped = default_model()
    say(f"new model, held out:     {_pr(model, hx, hy)}")
    say(f"new model, training:     {_pr(model, xs, ys)}")
    say(f"shipped model, held out: {_pr(shipped, hx, hy)} (threshold {shipped.threshold:g})")
    say(f"shipped model, training: {_pr(shipped, xs, ys)}")
    say(f"model: {model.dumps()}")
    out.write_text(model.dumps() + "\n")
    say(f"wrote {out}")
    return model
