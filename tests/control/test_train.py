"""`braid train` (issue 7): reading gap traces, the held-out split, the threshold, the model."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from braid.control.cli import main
from braid.control.train import Part, choose_threshold, read_trace, split
from braid.core.predictor import LossModel, features, load_model


def _gap_lines(rng: random.Random, gaps: int) -> list[str]:
    """Lines like a portal's trace: per gap up to 8 samples 2 ms apart, one label. A late
    packet arrives within the paths' 20 ms delay spread; a lost one never does."""
    lines = []
    for _ in range(gaps):
        lost = rng.random() < 0.4
        arrives = 1.0 if lost else rng.uniform(0.002, 0.02)
        age = 0.0
        while age < arrives and age < 0.016:
            passed = 1.0 if lost and age > 0.005 else 0.5
            x = features(age, 0.02, 0.002, passed, 0.1)
            lines.append(json.dumps({"x": [round(v, 5) for v in x], "y": int(lost)}))
            age += 0.002
    return lines


def _write_traces(folder: Path, count: int, gaps: int = 60) -> list[Path]:
    rng = random.Random(7)
    paths = []
    for k in range(count):
        path = folder / f"run-{k}.jsonl"
        path.write_text("\n".join(_gap_lines(rng, gaps)) + "\n")
        paths.append(path)
    return paths


def test_bad_line_is_one_error_naming_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = _write_traces(tmp_path, 2)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"x": [0, 0, 0, 0, 1], "y": 0}\n\n{"x": [0, 0, 0, 0, 1], "y": 0\n')
    out = tmp_path / "model.json"
    code = main(["train", *map(str, good), str(bad), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"braid: train: {bad}:3: not JSON")
    assert not out.exists()
    for text, needle in (
        ('{"x": [0, 0, 1], "y": 1}', "x is not 5 finite numbers"),
        ('{"x": [0, 0, 0, 0, 1], "y": 2}', "y is 2, not 0 or 1"),
        ('{"x": [0, 0, 0, 0, 1], "y": true}', "y is true, not 0 or 1"),
        ("[1, 2]", "x is not 5"),
    ):
        bad.write_text(text + "\n")
        assert main(["train", str(bad), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"{bad}:1: {needle}" in err, err


def test_missing_file_and_bad_out_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (trace,) = _write_traces(tmp_path, 1)
    assert main(["train", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "m.json")]) == 2
    assert "nope.jsonl: cannot read (No such file or directory)" in capsys.readouterr().err
    assert main(["train", str(trace), "--out", str(tmp_path / "no" / "m.json")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["train", str(trace), "--out", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["train", str(trace), "--out", "m.json", "--holdout", "1.5"])
    assert exc.value.code == 2
    # Only late packets: nothing to learn a loss from.
    late = tmp_path / "late.jsonl"
    late.write_text('{"x": [0.1, 0.1, 0.5, 0, 1], "y": 0}\n' * 10)
    assert main(["train", str(late), "--out", str(tmp_path / "m.json")]) == 2
    assert "no loss (y = 1) samples" in capsys.readouterr().err


def test_holdout_is_by_whole_file_evenly_spread(tmp_path: Path) -> None:
    paths = _write_traces(tmp_path, 8)
    (tmp_path / "empty.jsonl").write_text("")
    traces = [read_trace(p) for p in reversed([*paths, tmp_path / "empty.jsonl"])]
    train, test = split(traces, 0.25)
    # Every 4th file by name (the empty one is skipped), whole files only.
    assert [p.name for p in test] == [str(paths[3]), str(paths[7])]
    assert [p.name for p in train] == [str(paths[k]) for k in (0, 1, 2, 4, 5, 6)]
    by_name = {t.name: t for t in traces}
    for part in train + test:
        assert part.xs == by_name[part.name].xs and part.ys == by_name[part.name].ys
    # Deterministic; at least one file held out, never all of them; 0 holds out none.
    assert split(traces, 0.25) == (train, test)
    two = [read_trace(p) for p in paths[:2]]
    assert split(two, 0.1)[1] == [two[1]]
    assert split(two, 0.9)[0] == [two[0]]
    assert split(traces, 0.0)[1] == []


def test_single_file_is_held_out_in_blocks_of_lines(tmp_path: Path) -> None:
    (path,) = _write_traces(tmp_path, 1, gaps=200)
    trace = read_trace(path)
    train, test = split([trace], 0.25)
    assert len(train) + len(test) == 20 and len(test) == 5
    # Blocks are consecutive lines, in order, covering the file once.
    blocks = sorted(train + test, key=lambda p: int(p.name.split()[-1].split("-")[0]))
    assert [x for p in blocks for x in p.xs] == trace.xs
    for part in test:
        first, last = map(int, part.name.rsplit(" ", 1)[1].split("-"))
        assert part.xs == trace.xs[first - 1 : last]


def test_threshold_is_best_precision_with_half_recall() -> None:
    model = LossModel((1.0, 0.0, 0.0, 0.0, 0.0))
    xs = [[v, 0.0, 0.0, 0.0, 0.0] for v in (5, 4, 3, 3, 2, 1, 0)]
    ys = [1, 0, 1, 1, 0, 1, 0]
    # Thresholds at p(5): recall 1/4; p(4): 1/4; p(3): 3/4 with precision 3/4 (best);
    # p(2): 3/4 with 3/5; p(1): 1 with 4/6.
    assert choose_threshold(model, xs, ys) == model.probability([3, 0, 0, 0, 0])
    assert choose_threshold(model, xs, ys, min_recall=1.0) == model.probability([1, 0, 0, 0, 0])
    with pytest.raises(ValueError):
        choose_threshold(model, xs, [0] * len(xs))


def test_train_writes_a_model_load_model_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = _write_traces(tmp_path, 4)
    out = tmp_path / "model.json"
    assert main(["train", *map(str, paths), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    model = load_model(out.read_text())
    assert len(model.weights) == 5 and 0.0 < model.threshold < 1.0
    assert f"threshold {model.threshold:.4f}: chosen on the training data" in printed
    assert f"held out: {paths[3]}" in printed and "held out: 1 files" in printed
    for label in ("new model, held out", "new model, training", "shipped model, held out"):
        assert label in printed
    assert f"model: {model.dumps()}" in printed
    # The rule is learnable: the held-out samples are predicted well.
    held = next(line for line in printed.splitlines() if line.startswith("new model, held"))
    precision, recall = float(held.split()[5]), float(held.split()[7])
    assert precision > 0.8 and recall >= 0.5, held
    # A given threshold is kept.
    assert main(["train", *map(str, paths), "--out", str(out), "--threshold", "0.9"]) == 0
    assert "threshold 0.9000: given" in capsys.readouterr().out
    assert load_model(out.read_text()).threshold == 0.9


def test_part_positives() -> None:
    assert Part("a", [[0.0] * 5] * 3, [1, 0, 1]).positives == 2
