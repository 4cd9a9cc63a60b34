"""The statistics file: replaced whole (`.json`) or appended as a time series (`.jsonl`)."""

from __future__ import annotations

import json
from pathlib import Path

from braid.runtime.stats import write_statistics


def test_json_file_is_replaced_and_jsonl_file_grows(tmp_path: Path) -> None:
    whole, series = tmp_path / "s.json", tmp_path / "s.jsonl"
    for n in range(3):
        doc = {"n": n, "rate": 1.5 * n}
        write_statistics(whole, doc)
        write_statistics(series, doc)
    assert json.loads(whole.read_text()) == {"n": 2, "rate": 3.0}
    lines = series.read_text().splitlines()
    assert [json.loads(line)["n"] for line in lines] == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json", "s.jsonl"]  # no temp file
