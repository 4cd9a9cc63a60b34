"""Issue 7 in the lab: a link whose MTU is 1300 inside the emulator drops larger frames
without an ICMP error (a path MTU black hole). braid finds the path's MTU by probing
(1300 - 28 UDP/IPv4 - 24 record = 1248-byte session datagrams), sends full-size inner
packets over it in fragments, and one TCP flow still gets both links. (A TCP flow over
that link alone stalls: without ICMP its own path MTU discovery never learns; so no
"links" series here.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from braid.lab.cli import main

pytestmark = [pytest.mark.root, pytest.mark.level]

SCENARIO = """
duration = 10
interval = 0.5
series = ["braid"]
traffic = "tcp"
direction = "up"
cc = "cubic"

[[link]]
rate = "20mbit"
delay = "10ms"

[[link]]
rate = "20mbit"
delay = "10ms"
mtu = 1300
"""


def test_black_hole_link_is_probed_and_carries_fragments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "mtu.toml"
    path.write_text(SCENARIO)
    monkeypatch.setenv("BRAID_LAB_STATS", str(tmp_path))
    out_json = tmp_path / "r.json"
    assert main(["run", str(path), "--json", str(out_json)]) == 0
    print(capsys.readouterr().out)
    series = json.loads(out_json.read_text())["series"]
    braid = series["braid"]["mbps"]
    lines = (tmp_path / "local.jsonl").read_text().splitlines()
    assert len(lines) > 20  # a snapshot every 0.25 s through the run
    local = json.loads(lines[-1])["sessions"][0]
    mtus = {p["path_id"]: p["mtu"] for p in local["paths"]}
    print(f"braid {braid} Mbit/s; path MTUs {mtus}; fragmented {local['fragmented']}")
    assert mtus[0] == 1426  # the default inner MTU 1400 + the 26-byte DATA header
    assert 1248 - 16 <= mtus[1] <= 1248
    assert local["fragmented"] > 1000
    assert braid > 25.0  # both links carry the flow (one alone: < 20; 34.7 measured)
