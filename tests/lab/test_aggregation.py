"""Issue 5 in the lab: one CUBIC flow through braid over unequal links gets nearly their sum.

A short (10 s) version of the `agg-unequal-10-40` scenario: 10 Mbit/s 10 ms + 40 Mbit/s
40 ms, each link alone and braid. The assertion keeps a safe margin below the issue's
target (>= 90 % of the links' summed solo goodput over 20 s, median of 3 runs): the 10 s
run includes TCP's ramp-up and shares two cores with everything else on the machine.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

import braid.lab
from braid.lab.cli import main
from braid.lab.netns import list_netns

pytestmark = [pytest.mark.root, pytest.mark.level]
SCENARIOS = Path(braid.lab.__file__).parent / "scenarios"

HELD_ACKS = 1_000
"""Acknowledgements the remote portal must have held in the 10 s ack test (at half the
links' rates: one per two segments, those of segments that came early)."""

SCENARIO = """
duration = 10
interval = 0.5
series = ["links", "braid"]
traffic = "tcp"
direction = "up"
cc = "cubic"

[[link]]
rate = "10mbit"
delay = "10ms"

[[link]]
rate = "40mbit"
delay = "40ms"
"""


def _run(tmp_path: Path, capsys: pytest.CaptureFixture[str], scenario: str) -> dict[str, Any]:
    """Run `scenario` (TOML text) in the lab; its series from the JSON result. The lab
    must remove every namespace it made."""
    before = set(list_netns())
    path = tmp_path / "scenario.toml"
    path.write_text(scenario)
    out_json = tmp_path / "r.json"
    code = main(["run", str(path), "--json", str(out_json)])
    print(capsys.readouterr().out)
    assert code == 0
    assert not set(list_netns()) - before
    series: dict[str, Any] = json.loads(out_json.read_text())["series"]
    return series


def _last_session(stats: Path, role: str) -> dict[str, Any]:
    """The session as the `role` portal's last statistics line had it (BRAID_LAB_STATS)."""
    sessions: list[dict[str, Any]] = [
        line["sessions"][0]
        for line in map(json.loads, (stats / f"{role}.jsonl").read_text().splitlines())
        if line.get("sessions")
    ]
    return sessions[-1]


def _half_rates(scenario: str) -> str:
    """`scenario` with every link at half its rate (the delays kept). The four-link tests
    run so: what they check (which paths a flow uses, for how long its round trip covers
    them) does not depend on the rates, and at 100 Mbit/s together the portals, the relay
    and iperf3 need most of the machine's two cores: on a machine half as fast as usual
    (2026-12-01: 224-252 Mbit/s through one link in `bench/bench_tunnel.py`, against 467)
    the flows were CPU-bound near 75-84 Mbit/s whatever braid did."""
    halved, count = re.subn(
        r'rate = "(\d+)mbit"', lambda m: f'rate = "{int(m.group(1)) // 2}mbit"', scenario
    )
    assert count == 4, count
    return halved


def _braid_only(name: str, *, duration: int, equalize: str | None) -> str:
    """The shipped scenario `name` (20 s x 3, links, MPTCP and braid) as one run of braid
    alone, `duration` seconds, with `equalize` on both portals (None: braid's default)."""
    shipped = (SCENARIOS / f"{name}.toml").read_text()
    scenario = (
        shipped.replace("duration = 20", f"duration = {duration}")
        .replace("repeat = 3", "repeat = 1")
        .replace('series = ["links", "mptcp", "braid"]', 'series = ["braid"]')
    )
    if equalize is not None:
        scenario = scenario.replace(
            "\n[[link]]", f'\n[braid]\nequalize = "{equalize}"\n\n[[link]]', 1
        )
        assert f'equalize = "{equalize}"' in scenario
        assert "equalize" not in shipped
    assert f"duration = {duration}" in scenario and "repeat = 1" in scenario
    assert 'series = ["braid"]' in scenario
    return scenario


def test_braid_aggregates_unequal_links(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One CUBIC upload over 10 Mbit/s 10 ms + 40 Mbit/s 40 ms. The client's LAN has a
    1500-byte MTU and the tunnel 1400: each portal clamps the MSS of the SYNs entering
    it (`clamp_mss`), so the flow's first window fits the tunnel. Without that the kernel
    refused the first 1448-byte segments (ICMP, path MTU discovery) and the sender resent
    them: 15-17 retransmissions in every run, 1-2 with it (by hand, four runs), and the
    first half second at 10-12 Mbit/s (three runs) instead of 18 (one run)."""
    stats = tmp_path / "stats"
    stats.mkdir()
    monkeypatch.setenv("BRAID_LAB_STATS", str(stats))
    series = _run(tmp_path, capsys, SCENARIO)
    total = series["link-1"]["mbps"] + series["link-2"]["mbps"]
    braid = series["braid"]
    for role in ("local", "remote"):
        last = _last_session(stats, role)
        assert last["mss_clamped"] >= 1, role  # (iperf3's SYN, or its SYN-ACK)
    # The remote portal's paths carried the acknowledgements only: their estimates stay
    # near the links' rates (a round that kept a path busy less than half its estimate,
    # with no queue, says nothing). Before, link 1's fell to 330 kB/s of 1.25 MB/s here
    # (one run), and over four links a download started next took 1-1.5 s longer to fill
    # them (docs/design-notes.md, "A path that carries only acknowledgements").
    for path in _last_session(stats, "remote")["paths"]:
        assert path["btl_bw"] >= 0.5 * path["rate_bps"] / 8, path
    # The first window was not resent (it is 10 segments; a few losses may come later).
    assert braid["runs"][0]["retransmits"] < 10, braid["runs"][0]["retransmits"]
    # Both links carry the flow: the 10 Mbit/s one at least half its rate over the run
    # (the 40 Mbit/s link alone gives 79 % of the two: the total alone cannot tell). The
    # margin is for a slow machine: 96 % by hand, 82 % once in a clean-clone suite on a
    # machine half as fast as usual (2026-12-01), where the ramp-up lost more.
    assert braid["mbps"] >= 0.75 * total, (braid["mbps"], total)
    slow = _last_session(stats, "remote")["paths"][0]
    assert slow["rate_bps"] == 10_000_000, slow
    assert slow["bytes_received"] >= 0.5 * 10_000_000 / 8 * 10, slow
    # Steady state (after TCP's ramp-up) is close to the sum.
    samples = [v for t, v in braid["runs"][0]["samples"] if t > 4.0]
    assert sum(samples) / len(samples) >= 0.85 * total


def test_a_download_over_links_with_a_narrow_upload(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shipped `agg-narrow-upload` (a CUBIC download over 2 x 20 Mbit/s down, 0.5
    up), braid only, once, 15 s. The acknowledgements fill the uploads: with each in a
    tunnel datagram of its own they held the download to 21 Mbit/s of the links' 38,
    with a backlog of them queued in the tunnel. With `ack_filter` a newer one takes
    the place of a queued one, the remote portal's paths count what they delivered while
    their feedback queued on the way back (`back_queue`), and that feedback comes every
    32 datagrams: 35.3-35.7 Mbit/s in the evaluation (20 s runs)."""
    stats = tmp_path / "stats"
    stats.mkdir()
    monkeypatch.setenv("BRAID_LAB_STATS", str(stats))
    series = _run(tmp_path, capsys, _braid_only("agg-narrow-upload", duration=15, equalize=None))
    local = _last_session(stats, "local")
    assert local["acks_filtered"] > 1000, local["acks_filtered"]
    assert series["braid"]["mbps"] >= 26.0, series["braid"]["mbps"]


def test_braid_aggregates_a_download_over_four_links(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The shipped `agg-four-down` (a download, server -> client, over 10/20/30/40 Mbit/s
    with 5/10/20/40 ms) at half the rates (`_half_rates`), braid only, once, 10 s. The
    remote portal sends it; it learns each link's download rate from the local portal
    (PATH_INFO, the lab's `download` hints). Before that, its paths started blind and the
    40 ms one was often never used: 4 of 10 runs stayed near 54 Mbit/s (the three shorter
    links, at full rates)."""
    shipped = (SCENARIOS / "agg-four-down.toml").read_text()
    scenario = _half_rates(
        shipped.replace("duration = 20", "duration = 10")
        .replace("repeat = 3", "repeat = 1")
        .replace('series = ["links", "mptcp", "braid"]', 'series = ["braid"]')
    )
    assert "duration = 10" in scenario and "repeat = 1" in scenario
    assert 'series = ["braid"]' in scenario
    braid = _run(tmp_path, capsys, scenario)["braid"]
    # Steady state (after TCP's ramp-up): the links are 50 Mbit/s together (about 45 of
    # TCP goodput); the three shorter ones alone give 27.
    samples = [v for t, v in braid["runs"][0]["samples"] if t > 4.0]
    assert sum(samples) / len(samples) >= 36, samples


def test_one_bbr_flow_fills_four_links_of_unequal_delay(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The shipped `agg-four-bbr` (an upload with BBR over 10/20/30/40 Mbit/s with
    5/10/20/40 ms) at half the rates, braid only, once, 10 s. BBR sizes its window by its
    minimum RTT; the remote portal's delay equalization (`equalize = "tcp"`, set here)
    gives the flow's data the slowest path's delay, so that minimum covers every path and
    the window fills all four. Without it the flow stayed at 50.7-52.9 Mbit/s in every run
    at full rates (the three shorter links: a hard cap, not loss), 34.6-35.2 over 20 s at
    half rates with the default "bulk" (first 10 s about 26)."""
    scenario = _half_rates(_braid_only("agg-four-bbr", duration=10, equalize="tcp"))
    assert 'cc = "bbr"' in scenario
    braid = _run(tmp_path, capsys, scenario)["braid"]
    samples = [v for t, v in braid["runs"][0]["samples"] if t > 4.0]
    assert sum(samples) / len(samples) >= 33, samples


@pytest.mark.parametrize("where", ["session", "class"])
def test_ack_equalization_gives_a_bbr_upload_the_four_links_from_its_start(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    """The shipped `agg-four-bbr` (a BBR upload over 10/20/30/40 Mbit/s with 5/10/20/40 ms),
    at half the rates, braid only, once, 10 s, with `equalize = "ack"`: the remote portal holds the server's
    acknowledgements (and its SYN-ACK) of what arrived early until it would have come over
    the 40 ms path, so the client's minimum round trip covers every path from its first
    sample. By hand: 91-92 Mbit/s from 1.5 s on; with the default "bulk" 52-54 until the
    first PROBE_RTT at 10 s (docs/design-notes.md, "Holding the acknowledgement").

    "class": the shipped `agg-four-bbr-class`, where the session keeps "bulk" and a
    [[class]] of iperf3's port (written into both portals' configs by the lab) gets "ack".
    Without the class's override it is the "bulk" case above."""
    stats = tmp_path / "stats"
    stats.mkdir()
    monkeypatch.setenv("BRAID_LAB_STATS", str(stats))
    if where == "session":
        scenario = _half_rates(_braid_only("agg-four-bbr", duration=10, equalize="ack"))
    else:
        scenario = _half_rates(_braid_only("agg-four-bbr-class", duration=10, equalize=None))
        assert "[braid]" not in scenario and 'equalize = "ack"' in scenario
    braid = _run(tmp_path, capsys, scenario)["braid"]
    remote = _last_session(stats, "remote")
    samples = [v for t, v in braid["runs"][0]["samples"] if 1.5 < t <= 9.5]
    print(f"remote ingress: {remote['equalized']} packets held; Mbit/s {samples}")
    # (acknowledgements of what came early; "bulk" holds nothing before the first PROBE_RTT)
    assert remote["equalized"] > HELD_ACKS, remote["equalized"]
    assert sum(samples) / len(samples) >= 36, samples


def test_bulk_equalization_holds_a_bbr_download_from_its_probe_rtt_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shipped `agg-four-down-bbr` (a BBR download over 10/20/30/40 Mbit/s with
    5/10/20/40 ms) at half the rates, braid only, 25 s, with braid's defaults (`equalize = "bulk"`
    since f1e1636; "off" before). The remote portal's ingress sees the flow's PROBE_RTT
    (about 10 s in; the next at 20 s) and marks it; the local portal's egress holds it
    from then on, and the flow fills all four links (before: the three shorter ones,
    50.7-52.9 Mbit/s in every run at full rates). By hand: 80-90 Mbit/s after the first
    PROBE_RTT at full rates.
    Once (a clean-clone suite, 2026-11-29) the flow kept no queue in the tunnel and was
    never marked (0 trials, 31 Mbit/s); such a flow is now marked ahead of its first
    PROBE_RTT (`braid.core.equalize.ANTICIPATE_AT`; printed, not asserted: it is rare).
    The download's packets travel with compressed headers.
    A second run follows on the same portals: the local egress remembered the pair of
    hosts the first flow was held between (`equalize_remember`), so the new connection
    gets "ack" from its SYN-ACK on and fills the four links from its first seconds (by
    hand at half the rates: 35 Mbit/s in the first run, 44-45 in the next; the first
    run's first 10 s leave link 4 unused)."""
    scenario = _half_rates(_braid_only("agg-four-down-bbr", duration=25, equalize=None))
    scenario = scenario.replace("repeat = 1", "repeat = 2")
    assert 'cc = "bbr"' in scenario and 'direction = "down"' in scenario
    stats = tmp_path / "stats"
    stats.mkdir()
    monkeypatch.setenv("BRAID_LAB_STATS", str(stats))
    braid = _run(tmp_path, capsys, scenario)["braid"]
    remote, local = _last_session(stats, "remote"), _last_session(stats, "local")
    print(
        f"remote ingress: {remote['equalize_trials']} trials, {remote['equalize_ahead']}"
        f" flow(s) marked ahead, {remote['equalize_flows']} flow(s) marked; local egress:"
        f" {local['equalized']} packets held"
    )
    assert remote["equalize_flows"] >= 1  # the download, held
    # Header compression (on by default) end to end: the download fills the links, so most
    # of its packets wait for a path and leave compact (83 % in one run by hand), and the
    # local portal rebuilt them for the kernel's TCP (which checks every checksum): none
    # missed its context.
    print(
        f"header compression: remote sent {remote['compacted']} of {remote['packets_sent']}"
        f" packets compact; local rebuilt {local['expanded']}"
    )
    assert remote["compacted"] > 0.5 * remote["packets_sent"]
    assert local["expanded"] > 0.95 * remote["compacted"]
    assert local["drops"]["compact_miss"] == 0 and local["drops"]["bad_compact"] == 0
    assert local["equalized"] > 5_000
    # Held at the latest from the second PROBE_RTT (20 s): the last 3 s fill the links
    # (about 45 Mbit/s of TCP goodput; the three shorter links alone 27).
    samples = [v for t, v in braid["runs"][0]["samples"] if t > 22.0]
    assert sum(samples) / len(samples) >= 34, samples
    # The second connection, of the remembered pair: "ack" from its first packet.
    first, second = ([v for t, v in run["samples"] if 1.5 < t <= 9.5] for run in braid["runs"][:2])
    print(
        f"local egress: {local['equalize_pairs']} pair(s) remembered,"
        f" {local['equalize_paired']} connection(s) given ack; first 9.5 s of each run:"
        f" {sum(first) / len(first):.1f} and {sum(second) / len(second):.1f} Mbit/s"
    )
    assert local["equalize_pairs"] == 1 and local["equalize_paired"] >= 1
    assert sum(second) / len(second) >= 1.15 * sum(first) / len(first), (first, second)
