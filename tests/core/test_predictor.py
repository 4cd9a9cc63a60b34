"""Tests for the loss predictor (issue 7)."""

from __future__ import annotations

import random
from importlib.resources import files

import pytest

from braid.core.predictor import features, fit, load_model, precision_recall


def _synthetic(rng: random.Random, n: int) -> tuple[list[list[float]], list[int]]:
    """Gaps on two paths with 20 ms delay spread and 3 ms jitter: a late packet arrives
    within spread + jitter; a lost one never does. Samples are taken at a random age."""
    xs: list[list[float]] = []
    ys: list[int] = []
    for _ in range(n):
        lost = rng.random() < 0.3
        age = rng.uniform(0.0, 0.08)
        late_by = rng.uniform(0.0, 0.02) + abs(rng.gauss(0, 0.003))
        if not lost and age > late_by:
            continue  # the late packet arrived before this sample: no gap to judge
        passed = 1.0 if lost and rng.random() < 0.5 else 0.5
        xs.append(features(age, 0.02, 0.003, passed, 0.02))
        ys.append(int(lost))
    return xs, ys


def test_fit_learns_separable_rule_and_generalises() -> None:
    rng = random.Random(11)
    xs, ys = _synthetic(rng, 3000)
    model = fit(xs, ys)
    hx, hy = _synthetic(random.Random(12), 2000)
    prec, rec = precision_recall(model, hx, hy)
    assert prec > 0.8 and rec > 0.5, (prec, rec)


def test_model_roundtrip_and_bad_file() -> None:
    rng = random.Random(1)
    xs, ys = _synthetic(rng, 300)
    m = fit(xs, ys, epochs=20)
    assert load_model(m.dumps()) == m
    with pytest.raises(ValueError, match="weights"):
        load_model('{"weights": [1, 2]}')
    with pytest.raises(ValueError, match="loss model"):
        load_model("not json")


def test_default_model_ships_and_loads() -> None:
    text = files("braid.core").joinpath("predictor_model.json").read_text()
    m = load_model(text)
    # Fitted on lab traces (`braid lab record`, docs/lab.md): a fresh gap on a calm link is
    # not a loss, nor an old one where recent gaps were late packets (unequal delays); where
    # recent gaps were mostly losses (recent_loss: the share of resolved gaps that were
    # losses), a new one is NACKed at once.
    assert not m.is_loss(features(0.0, 0.02, 0.003, 0.0, 0.0))
    assert not m.is_loss(features(0.08, 0.02, 0.003, 0.5, 0.0))
    assert m.is_loss(features(0.0, 0.02, 0.003, 0.5, 0.9))
