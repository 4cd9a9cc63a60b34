# Loss predictor (issue 7, point 4): logistic regression deciding that a reorder gap is a
# loss (NACK now) rather than a late packet (wait).
#
# Features (what the egress knows when it looks at a gap), see `features()`:
#   gap age / (one-way delay spread of the live paths + 2 x jitter + the longest interval
#   between two datagrams on a live path), max path jitter / that same scale,
#   fraction of live paths that already delivered later packets, recent loss rate, bias.
#
# Invariants:
# - Pure Python, no clock, no I/O beyond reading the shipped model (predictor_model.json,
#   package data) once: the model is a weight vector; `load_model` parses JSON text.
# - `fit` is deterministic (fixed order, full-batch gradient descent with L2).
from __future__ import annotations

import json
import math
import operator
from dataclasses import dataclass
from functools import cache
from importlib import resources

N_FEATURES = 5


def features(
    gap_age: float,
    owd_spread: float,
    max_jitter: float,
    passed_fraction: float,
    recent_loss: float,
    interval: float = 0.0,
) -> list[float]:
    """Feature vector for a gap: `owd_spread` = max - min one-way delay of the live
    paths, `interval` = the longest time between two datagrams on a live path (a gap
    cannot be proven before every path delivered its next one)."""
    scale = max(owd_spread + 2.0 * max_jitter + interval, 0.001)
    return [
        min(gap_age / scale, 10.0),
        min(max_jitter / scale, 10.0),
        passed_fraction,
        min(recent_loss * 10.0, 10.0),
        1.0,
    ]


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@dataclass(frozen=True, slots=True)
class LossModel:
    """Logistic regression weights and a decision threshold."""

    weights: tuple[float, ...]
    threshold: float = 0.5

    def probability(self, x: list[float]) -> float:
        """Probability that the gap is a loss."""
        return _sigmoid(sum(w * v for w, v in zip(self.weights, x, strict=True)))

    def is_loss(self, x: list[float]) -> bool:
        """Decision: NACK now."""
        return self.probability(x) >= self.threshold

    def dumps(self) -> str:
        """JSON text of the model."""
        return json.dumps({"weights": list(self.weights), "threshold": self.threshold})


def load_model(text: str) -> LossModel:
    """Parse a model file; raises ValueError naming the problem."""
    try:
        data = json.loads(text)
        weights = tuple(float(w) for w in data["weights"])
        threshold = float(data.get("threshold", 0.5))
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"loss model: bad file ({exc})") from None
    if len(weights) != N_FEATURES:
        raise ValueError(f"loss model: expected {N_FEATURES} weights, got {len(weights)}")
    return LossModel(weights, threshold)


@cache
def default_model() -> LossModel:
    """The model shipped with the package (predictor_model.json, fitted by `braid train`
    on lab traces)."""
    return load_model(resources.files("braid.core").joinpath("predictor_model.json").read_text())


def fit(
    xs: list[list[float]], ys: list[int], epochs: int = 300, rate: float = 0.5, l2: float = 1e-3
) -> LossModel:
    """Fit logistic regression by full-batch gradient descent."""
    if not xs or len(xs) != len(ys):
        raise ValueError("fit needs equally many samples and labels, at least one")
    if any(len(x) != N_FEATURES for x in xs):
        raise ValueError(f"fit needs {N_FEATURES} features per sample")
    w = [0.0] * N_FEATURES
    n = len(xs)
    columns = [list(column) for column in zip(*xs, strict=True)]
    exp = math.exp
    for _ in range(epochs):
        # The same arithmetic as `LossModel.probability`, unrolled (N_FEATURES = 5): fitting
        # 100k lab samples is a few times faster than with the generic loops.
        w0, w1, w2, w3, w4 = w
        errors = []
        for (a, b, c, d, e), y in zip(xs, ys, strict=True):
            z = w0 * a + w1 * b + w2 * c + w3 * d + w4 * e
            if z >= 0:
                p = 1.0 / (1.0 + exp(-z))
            else:
                q = exp(z)
                p = q / (1.0 + q)
            errors.append(p - y)
        grad = [sum(map(operator.mul, errors, column)) for column in columns]
        w = [w[j] - rate * (grad[j] / n + l2 * w[j]) for j in range(N_FEATURES)]
    return LossModel(tuple(w))


def precision_recall(model: LossModel, xs: list[list[float]], ys: list[int]) -> tuple[float, float]:
    """Precision and recall of the loss decision on labelled samples."""
    tp = fp = fn = 0
    for x, y in zip(xs, ys, strict=True):
        p = model.is_loss(x)
        tp += p and y == 1
        fp += p and y == 0
        fn += (not p) and y == 1
    prec = tp / (tp + fp) if tp + fp else 1.0
    rec = tp / (tp + fn) if tp + fn else 1.0
    return prec, rec
