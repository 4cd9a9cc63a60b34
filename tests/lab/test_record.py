"""`braid lab record` end to end (issue 7): one short lossy run, a trace file per portal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from braid.lab.cli import main
from braid.lab.netns import list_netns

pytestmark = pytest.mark.root

SCENARIO = """
name = "short loss"
duration = 20
repeat = 3
series = ["links", "mptcp", "braid"]
traffic = "tcp"
direction = "up"

[[link]]
rate = "20mbit"
delay = "5ms"
loss = "3%"

[[link]]
rate = "20mbit"
delay = "10ms"
loss = "3%"

[braid]
nack = true
"""


def test_record_writes_one_trace_per_portal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = set(list_netns())
    path = tmp_path / "short.toml"
    path.write_text(SCENARIO)
    out = tmp_path / "traces"
    code = main(["record", str(path), "--out", str(out), "--repeat", "1", "--duration", "3"])
    printed = capsys.readouterr().out
    print(printed)
    assert code == 0
    assert set(list_netns()) == before  # the lab is gone
    # Only the braid series ran, once; each portal wrote its own file.
    assert "link-1" not in printed and "mptcp" not in printed
    local, remote = out / "short_loss-1-local.jsonl", out / "short_loss-1-remote.jsonl"
    assert sorted(p.name for p in out.iterdir()) == [local.name, remote.name]
    lines = remote.read_text().splitlines()
    assert lines, "3 % loss upstream: the remote portal's egress saw gaps"
    for line in lines:
        sample = json.loads(line)
        assert len(sample["x"]) == 5 and sample["y"] in (0, 1)
    positives = sum(json.loads(line)["y"] for line in lines)
    assert f"{remote}: {len(lines)} samples, {positives} positives" in printed
    assert f"{local}: " in printed and "recorded 2 files" in printed
