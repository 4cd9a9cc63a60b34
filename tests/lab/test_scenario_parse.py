"""Scenario files, units, traffic specs, reports: no root needed, runs in milliseconds."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from braid.lab.emulator import LinkShape
from braid.lab.experiment import ScenarioResult, SeriesResult
from braid.lab.portals import PortalKeys, local_config, remote_config
from braid.lab.report import markdown_table, plot, recovery_time, window_mean, write_json
from braid.lab.scenario import (
    ScenarioError,
    bundled_scenarios,
    load_scenario,
    parse_scenario,
)
from braid.lab.topology import Topology
from braid.lab.traffic import RunResult, TrafficSpec, parse_iperf, percentile, summarise_ping
from braid.lab.units import format_rate, parse_duration, parse_percent, parse_rate

ISSUE_3_FORM = """
duration = 20
repeat = 3
interval = 0.5
series = ["links", "mptcp", "braid"]
traffic = "tcp"
direction = "up"
cc = "cubic"
[[link]]
rate = "20mbit"
delay = "10ms"
jitter = "0ms"
loss = "0%"
[[link]]
up = "10mbit"
down = "40mbit"
delay = "30ms"
[[event]]
at = 8
link = 2
set = { rate = "10mbit" }
[[event]]
at = 12
link = 1
action = "cut"
[braid]
scheduler = "earliest-arrival"
"""


def parse(text: str):  # type: ignore[no-untyped-def]
    return parse_scenario(tomllib.loads(text), name="t")


def test_units() -> None:
    assert parse_rate("20mbit") == 20e6
    assert parse_rate("1.5Gbit") == 1.5e9
    assert parse_rate("500kbit") == 500e3
    assert parse_duration("10ms") == pytest.approx(0.010)
    assert parse_duration("250us") == pytest.approx(250e-6)
    assert parse_duration(2) == 2.0
    assert parse_percent("1%") == pytest.approx(0.01)
    assert format_rate(20e6) == "20mbit"
    assert format_rate(1.5e6) == "1.5mbit"
    for bad in ("20", "fast", "-3mbit", "0mbit"):
        with pytest.raises(ValueError):
            parse_rate(bad)
    with pytest.raises(ValueError):
        parse_percent("150%")


def test_issue_3_form_is_accepted() -> None:
    scenario = parse(ISSUE_3_FORM)
    assert scenario.duration == 20 and scenario.repeat == 3
    assert scenario.series_names() == ["link-1", "link-2", "mptcp", "braid"]
    assert scenario.links[1].shape.rate_up_bps == 10e6
    assert scenario.links[1].shape.rate_down_bps == 40e6
    assert scenario.links[1].shape.delay == pytest.approx(0.030)
    first, second = scenario.events
    assert (first.at, first.link, first.action) == (8, 2, "set")
    assert first.changes == {"rate_up_bps": 10e6, "rate_down_bps": 10e6}
    assert first.describe() == "link 2 rate 10mbit"
    assert (second.action, second.describe()) == ("cut", "link 1 cut")
    assert scenario.braid == {"scheduler": "earliest-arrival"}


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("durashun = 3\n[[link]]\nrate='1mbit'", "unknown key 'durashun'"),
        ("[[link]]\nrate='1mbit'\nlatency='5ms'", "[[link]] 1: unknown key 'latency'"),
        ("[[link]]\nrate='fast'", "[[link]] 1: rate: expected a rate"),
        ("[[link]]\ndelay='5ms'", "[[link]] 1: rate: required"),
        ("[[link]]\nup='5mbit'", "[[link]] 1: down: required"),
        ("traffic='tcp:x'\n[[link]]\nrate='1mbit'", "traffic: expected"),
        ("cc='vegas'\n[[link]]\nrate='1mbit'", "cc: expected one of cubic, bbr"),
        ("direction='sideways'\n[[link]]\nrate='1mbit'", "direction: expected one of up, down"),
        ("series=['links','quic']\n[[link]]\nrate='1mbit'", "series: expected"),
        ("series=['link-3']\n[[link]]\nrate='1mbit'", "series: link-3 but the scenario has 1"),
        ("[[link]]\nrate='1mbit'\n[[event]]\nat=1\nlink=2\naction='cut'", "[[event]] 1: link:"),
        ("[[link]]\nrate='1mbit'\n[[event]]\nat=1\nlink=1\naction='explode'", "action: expected"),
        (
            "[[link]]\nrate='1mbit'\n[[event]]\nat=1\nlink=1\nset={speed='1mbit'}",
            "set.unknown key 'speed'",
        ),
        (
            "duration=5\n[[link]]\nrate='1mbit'\n[[event]]\nat=9\nlink=1\naction='cut'",
            "at: 9 s is not before",
        ),
        ("repeat=0\n[[link]]\nrate='1mbit'", "repeat: expected a whole number"),
        ("interval=0.01\n[[link]]\nrate='1mbit'", "interval: iperf3 samples"),
        ("[braid]\nscheduler={a=1}\n[[link]]\nrate='1mbit'", "braid.scheduler"),
        ("duration=3", "link: at least one [[link]]"),
    ],
)
def test_bad_scenarios_name_the_key(text: str, needle: str) -> None:
    with pytest.raises(ScenarioError) as info:
        parse(text)
    message = str(info.value)
    assert needle in message
    assert "\n" not in message


def test_traffic_specs() -> None:
    assert TrafficSpec.parse("tcp").iperf_args() == []
    assert TrafficSpec.parse("tcp:4").iperf_args() == ["-P", "4"]
    udp = TrafficSpec.parse("udp:30mbit")
    assert udp.iperf_args() == ["-u", "-b", "30000000", "-l", "1372"]
    assert str(udp) == "udp:30mbit"


def test_bundled_scenarios_load() -> None:
    names = bundled_scenarios()
    assert {"demo", "demo-cut", "quick", "eval-two-equal", "eval-loss"} <= set(names)
    for name in names:
        scenario = load_scenario(name)
        assert scenario.links
    with pytest.raises(ScenarioError, match=r"bundled scenarios: .*demo"):
        load_scenario("no-such-scenario")


def test_queue_limits() -> None:
    scenario = parse("[[link]]\nrate='20mbit'\nqueue='100p'\n[[link]]\nrate='8mbit'\nqueue='100ms'")
    assert scenario.links[0].shape.queue_limit_bytes(20e6) == 100 * 1514
    assert scenario.links[1].shape.queue_limit_bytes(8e6) == 100_000


IPERF_UP = {
    "end": {
        "sum_sent": {"bits_per_second": 20e6, "retransmits": 7},
        "sum_received": {"bits_per_second": 19e6},
        "sender_tcp_congestion": "cubic",
    },
    "intervals": [{"sum": {"end": 0.5, "seconds": 0.5, "bits_per_second": 25e6}}],
    "server_output_json": {
        "intervals": [
            {"sum": {"end": 0.5, "seconds": 0.5, "bits_per_second": 18e6}},
            {"sum": {"end": 1.0, "seconds": 0.5, "bits_per_second": 20e6}},
            {"sum": {"end": 1.02, "seconds": 0.02, "bits_per_second": 3e6}},
        ]
    },
}


def test_parse_iperf_takes_receiver_samples() -> None:
    up = parse_iperf(IPERF_UP, direction="up", traffic=TrafficSpec("tcp"), interval=0.5)
    assert up.mbps == pytest.approx(19.0)
    assert up.samples == [(0.5, 18.0), (1.0, 20.0)]  # server side, short tail dropped
    assert (up.retransmits, up.cc) == (7, "cubic")
    down = parse_iperf(IPERF_UP, direction="down", traffic=TrafficSpec("tcp"), interval=0.5)
    assert down.samples == [(0.5, 25.0)]  # client side when the client receives


def test_ping_summary_and_percentiles() -> None:
    ping, loss = summarise_ping(json.dumps({"sent": 4, "received": 3, "rtt_ms": [10, 20, 30]}))
    assert ping == {"p50": 20.0, "p95": 29.0}
    assert loss == pytest.approx(0.25)
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert summarise_ping("garbage") == (None, None)


def _result() -> ScenarioResult:
    scenario = parse(ISSUE_3_FORM)
    result = ScenarioResult(scenario, event_times=[(e.at, e.describe()) for e in scenario.events])
    for name, mbps in (("link-1", 19.0), ("link-2", 9.5), ("mptcp", 25.0), ("braid", 27.0)):
        runs = [
            RunResult(
                mbps=mbps + k,
                samples=[(t * 0.5, mbps + k) for t in range(1, 11)],
                retransmits=k,
                ping_ms={"p50": 20.0, "p95": 30.0},
            )
            for k in range(3)
        ]
        result.series[name] = SeriesResult(name, runs)
    return result


def test_json_schema_and_efficiency(tmp_path: Path) -> None:
    result = _result()
    assert result.links_sum() == pytest.approx(20.0 + 10.5)
    assert result.efficiency() == pytest.approx(28.0 / 30.5)
    path = tmp_path / "out.json"
    write_json([result], path)
    data = json.loads(path.read_text())
    assert list(data) == ["series"]
    assert list(data["series"]) == ["link-1", "link-2", "mptcp", "braid"]
    braid = data["series"]["braid"]
    assert braid["mbps"] == 28.0  # median over runs
    run = braid["runs"][0]
    assert set(run) == {"mbps", "samples", "retransmits", "ping_ms"}
    assert run["samples"][0] == [0.5, 27.0]
    assert run["ping_ms"] == {"p50": 20.0, "p95": 30.0}
    assert "| braid | 28.0 | 3 (27.0-29.0) | 92 % |" in markdown_table(result)


def test_plot_writes_png(tmp_path: Path) -> None:
    path = plot([_result()], tmp_path / "plot.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_windows_and_recovery() -> None:
    samples = [(0.5, 40.0), (1.0, 40.0), (1.5, 5.0), (2.0, 18.0), (2.5, 20.0)]
    assert window_mean(samples, 0.0, 1.0) == 40.0
    assert recovery_time(samples, 1.0, 16.0, 0.5) == pytest.approx(1.0)
    assert recovery_time(samples, 1.0, 50.0, 0.5) is None


def test_portal_configs_are_valid_braid_configs(tmp_path: Path) -> None:
    config = pytest.importorskip("braid.control.config")
    topo = Topology(2, tag="abcdef")
    shapes = [LinkShape(20e6, 20e6), LinkShape(40e6, 10e6)]
    keys = PortalKeys.generate()
    local = config.parse_config(local_config(topo, shapes, {"scheduler": "round-robin"}, keys))
    assert local.role == "local"
    assert [link.interface for link in local.links] == ["wan1", "wan2"]
    assert [link.source for link in local.links] == ["10.100.1.2", "10.100.2.2"]
    assert local.links[1].remote == ("10.100.2.1", 7100)
    assert local.links[1].rate_bps == 40_000_000
    assert local.session.scheduler == "round-robin"
    remote = config.parse_config(remote_config({}, keys))
    assert remote.role == "remote" and remote.listen is not None
    assert remote.listen.port == 7100


def test_topology_names_are_short_and_unique() -> None:
    first, second = Topology(8), Topology(8)
    assert first.tag != second.tag
    assert not set(first.namespaces) & set(second.namespaces)
    for link in first.links:
        for name in (link.local_if, link.emu_local, link.emu_remote):
            assert len(name) <= 15
