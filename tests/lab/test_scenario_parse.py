"""Scenario files, units, traffic specs, reports: no root needed, runs in milliseconds."""

from __future__ import annotations

import itertools
import json
import os
import random
import socket
import tomllib
from pathlib import Path

import pytest

from braid.lab.emulator import LinkShape
from braid.lab.evaluation import CASES, event_finding
from braid.lab.experiment import ScenarioResult, SeriesResult
from braid.lab.netns import LabError
from braid.lab.portals import PortalKeys, local_config, remote_config, role_trace_path
from braid.lab.record import check_out_dir, count_trace, file_stem, recording
from braid.lab.relay import Direction, gilbert_elliott
from braid.lab.report import (
    cut_shortfall,
    markdown_table,
    plot,
    recovery_time,
    window_mean,
    write_json,
)
from braid.lab.scenario import (
    ScenarioError,
    bundled_scenarios,
    load_scenario,
    parse_scenario,
)
from braid.lab.topology import Topology
from braid.lab.traffic import (
    RunResult,
    TrafficSpec,
    iperf_client_argv,
    parse_iperf,
    percentile,
    summarise_ping,
)
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
        (
            "direction='sideways'\n[[link]]\nrate='1mbit'",
            "direction: expected one of up, down, both",
        ),
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
        ("[[link]]\nrate='1mbit'\n[[class]]\nname='b'\nequalize='ak'", "class[0].equalize:"),
        ("[[link]]\nrate='1mbit'\n[[class]]\nequalize='ack'", "class[0].name: missing"),
        ("[[link]]\nrate='1mbit'\n[[class]]\nname='b'\nmatch={port=[1]}", "class[0].match.port"),
        ("class=3\n[[link]]\nrate='1mbit'", "class: 3 is an integer"),
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


IPERF_BIDIR = {
    # The shape of iperf3 3.12 --bidir -J --get-server-output: the client's intervals
    # hold its sending ("sum") and its receiving ("sum_bidir_reverse"), the server's the
    # other way round.
    "end": {
        "sum_sent": {"bits_per_second": 10e6, "retransmits": 3},
        "sum_received": {"bits_per_second": 9e6},
        "sum_sent_bidir_reverse": {"bits_per_second": 31e6},
        "sum_received_bidir_reverse": {"bits_per_second": 30e6},
        "sender_tcp_congestion": "cubic",
    },
    "intervals": [
        {
            "sum": {"end": 0.5, "seconds": 0.5, "bits_per_second": 50e6, "sender": True},
            "sum_bidir_reverse": {"end": 0.5, "seconds": 0.5, "bits_per_second": 28e6},
        },
        {
            "sum": {"end": 1.0, "seconds": 0.5, "bits_per_second": 50e6, "sender": True},
            "sum_bidir_reverse": {"end": 1.0, "seconds": 0.5, "bits_per_second": 31e6},
        },
    ],
    "server_output_json": {
        "intervals": [
            {
                "sum": {"end": 0.5, "seconds": 0.5, "bits_per_second": 8e6},
                "sum_bidir_reverse": {"end": 0.5, "seconds": 0.5, "bits_per_second": 60e6},
            },
            {
                "sum": {"end": 1.0, "seconds": 0.5, "bits_per_second": 9.5e6},
                "sum_bidir_reverse": {"end": 1.0, "seconds": 0.5, "bits_per_second": 60e6},
            },
        ],
        "end": {"sum_sent_bidir_reverse": {"bits_per_second": 31e6, "retransmits": 5}},
    },
}


def test_parse_iperf_both_ways_sums_what_each_receiver_saw() -> None:
    both = parse_iperf(IPERF_BIDIR, direction="both", traffic=TrafficSpec("tcp"), interval=0.5)
    assert both.both == pytest.approx((9.0, 30.0)) and both.mbps == pytest.approx(39.0)
    assert both.samples == [(0.5, pytest.approx(36.0)), (1.0, pytest.approx(40.5))]
    assert (both.retransmits, both.cc) == (8, "cubic")
    assert both.to_json()["up_mbps"] == 9.0 and both.to_json()["down_mbps"] == 30.0
    assert "--bidir" in iperf_client_argv(
        TrafficSpec("tcp"), direction="both", cc="cubic", duration=5, interval=0.5
    )


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


def test_cut_shortfall_sums_the_dips_below_the_level_during_the_cut() -> None:
    # 40 before the cut at 1.0; 18 during it, except a sample at 0 and one at 9
    values = {1.25: 40.0, 1.5: 0.0, 1.75: 9.0}
    samples = [(k * 0.25, values.get(k * 0.25, 40.0 if k <= 4 else 18.0)) for k in range(1, 41)]
    # the 40 that straddles the cut counts nothing; 0.25 s at 0, 0.125 s at half the level
    assert cut_shortfall(samples, 1.0, 9.0, 0.25) == pytest.approx(0.375)
    assert cut_shortfall(samples, 1.0, 2.0, 0.25) is None  # no level: the return came first


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


def test_a_scenario_without_rate_hints_gives_the_portal_no_link_rates() -> None:
    """`rate_hints = false`: the local portal's links have no `rate` or `download` (every
    path estimates its rate from feedback); by default they have the emulated rates."""
    config = pytest.importorskip("braid.control.config")
    topo = Topology(2, tag="abcdef")
    keys = PortalKeys.generate()
    text = "[[link]]\nup='10mbit'\ndown='30mbit'\n[[link]]\nrate='40mbit'\n"
    hinted, bare = parse(text), parse("rate_hints = false\n" + text)
    assert bare.rate_hints is False and hinted.rate_hints is True
    rates = {}
    for scenario in (hinted, bare):
        portal = config.parse_config(
            local_config(topo, scenario.shapes(), {}, keys, rate_hints=scenario.rate_hints)
        )
        rates[scenario.rate_hints] = [(lk.rate_bps, lk.download_bps) for lk in portal.links]
    assert rates == {
        True: [(10_000_000, 30_000_000), (40_000_000, 40_000_000)],
        False: [(None, None), (None, None)],
    }
    with pytest.raises(ScenarioError, match=r"^rate_hints: "):
        parse("rate_hints = 'no'\n[[link]]\nrate='1mbit'\n")


def test_the_norate_scenarios_are_their_twins_without_rate_hints() -> None:
    """The "agg-norate" case's scenarios: the same links, traffic and events as the case
    they shadow (agg-rise-norate: agg-drop's links the other way), with `rate_hints`
    false; every other bundled scenario gives the rates."""
    twins = {
        "agg-four-norate": "agg-four",
        "agg-unequal-10-40-down-norate": "agg-unequal-10-40-down",
        "agg-drop-norate": "agg-drop",
        "agg-four-down-bbr-norate": "agg-four-down-bbr",
    }
    for name, twin in twins.items():
        bare, hinted = load_scenario(name), load_scenario(twin)
        assert not bare.rate_hints and hinted.rate_hints
        fields = ("links", "traffic", "direction", "cc", "events", "series", "duration")
        assert [getattr(bare, f) for f in fields] == [getattr(hinted, f) for f in fields]
    rise = load_scenario("agg-rise-norate")
    assert not rise.rate_hints and [e.changes for e in rise.events] == [
        {"rate_up_bps": 40e6, "rate_down_bps": 40e6}
    ]
    case = next(c for c in CASES if c.key == "agg-norate")
    assert set(case.scenarios) == {*twins, "agg-rise-norate"}
    assert {n for n in bundled_scenarios() if not load_scenario(n).rate_hints} == set(
        case.scenarios
    )


def test_a_scenarios_classes_reach_both_portals() -> None:
    """[[class]] tables of a scenario (as in agg-four-bbr-class) go into both configs as
    they are, and each portal's parser reads them back."""
    config = pytest.importorskip("braid.control.config")
    scenario = parse(
        "[[link]]\nrate='1mbit'\n[[class]]\nname='bulk'\nmatch={ports=[5201,873], dscp=8}\n"
        "equalize='ack'\n[[class]]\nname='voice'\npriority=1\nscheduler='redundant'\n"
    )
    assert [c["name"] for c in scenario.classes] == ["bulk", "voice"]
    topo = Topology(1, tag="abcdef")
    keys = PortalKeys.generate()
    shapes = [LinkShape(20e6, 20e6)]
    for text in (
        local_config(topo, shapes, {}, keys, classes=scenario.classes),
        remote_config({"equalize": "bulk"}, keys, classes=scenario.classes),
    ):
        portal = config.parse_config(text)
        bulk, voice = portal.session.classes
        assert (bulk.name, bulk.ports, bulk.dscp, bulk.equalize) == (
            "bulk",
            frozenset({5201, 873}),
            frozenset({8}),
            "ack",
        )
        assert (voice.priority, voice.scheduler, voice.equalize) == (1, "redundant", None)
    assert load_scenario("agg-four-bbr-class").classes[0]["equalize"] == "ack"
    assert parse("[[link]]\nrate='1mbit'").classes == ()


def test_each_portal_gets_its_own_gap_trace(tmp_path: Path) -> None:
    config = pytest.importorskip("braid.control.config")
    topo = Topology(2, tag="abcdef")
    shapes = [LinkShape(20e6, 20e6), LinkShape(20e6, 20e6)]
    keys = PortalKeys.generate()
    session = {"nack": False, "gap_trace": str(tmp_path / "run-1.jsonl")}
    local = config.parse_config(local_config(topo, shapes, session, keys))
    remote = config.parse_config(remote_config(session, keys))
    assert local.session.gap_trace == str(tmp_path / "run-1-local.jsonl")
    assert remote.session.gap_trace == str(tmp_path / "run-1-remote.jsonl")
    assert session["gap_trace"] == str(tmp_path / "run-1.jsonl")  # not changed in place
    assert local.session.nack == remote.session.nack == "off"
    assert role_trace_path("a/b.c.jsonl", "remote") == Path("a/b.c-remote.jsonl")
    with pytest.raises(ValueError, match="role"):
        role_trace_path("t.jsonl", "client")
    # Without gap_trace the session table is the scenario's as it is.
    assert "gap_trace" not in local_config(topo, shapes, {"nack": True}, keys)


def test_recording_runs_braid_once_with_nack_off(tmp_path: Path) -> None:
    scenario = load_scenario("rec-loss")
    rec = recording(scenario, tmp_path / "rec-loss-3.jsonl", duration=4)
    assert rec.series == ("braid",) and rec.repeat == 1 and rec.duration == 4
    assert rec.braid == {
        "nack": False,
        "loss_predictor": True,
        "gap_trace": str(tmp_path / "rec-loss-3.jsonl"),
    }
    assert recording(scenario, tmp_path / "x.jsonl").duration == scenario.duration
    assert file_stem("my scenario/1") == "my_scenario_1" and file_stem("..") == "scenario"
    trace = tmp_path / "t.jsonl"
    trace.write_text('{"x": [0, 0, 0, 0, 1], "y": 1}\n\n{"x": [0, 0, 0, 0, 1], "y": 0}\n')
    counted = count_trace(trace)
    assert (counted.samples, counted.positives) == (2, 1)
    assert "2 samples, 1 positives (50.0 %)" in counted.describe()
    assert count_trace(tmp_path / "none.jsonl").samples == 0
    check_out_dir(tmp_path / "new" / "dir")
    assert (tmp_path / "new" / "dir").is_dir()
    with pytest.raises(LabError, match="not a directory"):
        check_out_dir(trace)


def test_topology_names_are_short_and_unique() -> None:
    first, second = Topology(8), Topology(8)
    assert first.tag != second.tag
    assert not set(first.namespaces) & set(second.namespaces)
    for link in first.links:
        for name in (link.local_if, link.emu_local, link.emu_remote):
            assert len(name) <= 15


def test_loss_burst_in_links_and_events() -> None:
    scenario = parse(
        "duration=10\n[[link]]\nrate='20mbit'\nloss='2%'\nloss_burst=4\n"
        "[[link]]\nrate='20mbit'\nloss='1%'\n"
        "[[event]]\nat=3\nlink=2\nset={loss='5%', loss_burst=3}\n"
        "[[event]]\nat=6\nlink=2\nset={loss_burst=0}\n"
    )
    first, second = scenario.links
    assert first.shape.loss == pytest.approx(0.02) and first.shape.loss_burst == 4.0
    assert first.describe() == "20mbit 0ms 2% loss in bursts of 4"
    assert second.shape.loss_burst is None  # unset: independent loss
    burst, independent = scenario.events
    assert burst.changes == {"loss": pytest.approx(0.05), "loss_burst": 3.0}
    assert burst.describe() == "link 2 loss 5%, loss bursts of 3"
    assert independent.changes == {"loss_burst": None}
    assert independent.describe() == "link 2 independent loss"
    # Bursty loss is the relay's, independent loss nftables'.
    assert (first.shape.relay_loss, first.shape.random_loss) == (pytest.approx(0.02), 0.0)
    assert (second.shape.relay_loss, second.shape.random_loss) == (0.0, pytest.approx(0.01))


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[[link]]\nrate='1mbit'\nloss_burst=0.5", "[[link]] 1: loss_burst: expected a mean"),
        ("[[link]]\nrate='1mbit'\nloss_burst='4'", "[[link]] 1: loss_burst: expected a mean"),
        ("[[link]]\nrate='1mbit'\nloss_burst=true", "[[link]] 1: loss_burst: expected a mean"),
        ("[[link]]\nrate='1mbit'\nloss='60%'\nloss_burst=1", "[[link]] 1: loss_burst: loss 60%"),
        (
            "[[link]]\nrate='1mbit'\nloss='40%'\n"
            "[[event]]\nat=1\nlink=1\nset={loss_burst=1}\n"
            "[[event]]\nat=2\nlink=1\nset={loss='60%'}",
            "[[event]] 2: set.loss_burst: loss 60% cannot come in bursts of 1",
        ),
    ],
)
def test_bad_loss_burst_names_the_key(text: str, needle: str) -> None:
    with pytest.raises(ScenarioError) as info:
        parse(text)
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_gilbert_elliott_chain_has_the_loss_and_burst_length() -> None:
    enter, leave = gilbert_elliott(0.05, 4.0)
    assert leave == 0.25
    assert enter / (enter + leave) == pytest.approx(0.05)  # stationary loss
    assert gilbert_elliott(0.05, None) == (0.0, 1.0)  # independent loss: not the relay's
    assert gilbert_elliott(0.0, 4.0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        gilbert_elliott(0.6, 1.0)
    direction = Direction("1/up", socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    direction.out.close()
    direction.p_enter, direction.p_leave = enter, leave
    rng = random.Random(7)
    lost = [direction.lose(rng.random()) for _ in range(200_000)]
    runs = [len(list(group)) for key, group in itertools.groupby(lost) if key]
    assert sum(lost) / len(lost) == pytest.approx(0.05, abs=0.005)
    assert sum(runs) / len(runs) == pytest.approx(4.0, rel=0.1)


def test_voice_traffic_spec() -> None:
    voice = TrafficSpec.parse("udp:80kbit:200")
    assert (voice.kind, voice.rate_bps, voice.length, voice.payload) == ("udp", 80e3, 200, 200)
    assert voice.iperf_args() == ["-u", "-b", "80000", "-l", "200"]  # 50 datagrams/s
    assert str(voice) == "udp:80kbit:200"
    assert TrafficSpec.parse(str(voice)) == voice
    assert TrafficSpec.parse("udp:30mbit").payload == 1372
    for bad in ("udp:80kbit:", "udp:80kbit:8", "udp:80kbit:1400", "udp:80kbit:x", "udp::200"):
        with pytest.raises(ValueError, match="expected"):
            TrafficSpec.parse(bad)


IPERF_UDP = {
    "end": {
        "sum": {"bits_per_second": 80e3, "lost_packets": 0, "packets": 1000},
        "sum_received": {
            "bits_per_second": 76e3,
            "lost_packets": 50,
            "packets": 1000,
            "lost_percent": 5.0,
        },
    },
    "intervals": [],
    "server_output_json": {
        "intervals": [{"sum": {"end": 0.5, "seconds": 0.5, "bits_per_second": 76e3}}]
    },
}


def test_parse_iperf_udp_records_receiver_loss() -> None:
    spec = TrafficSpec.parse("udp:80kbit:200")
    run = parse_iperf(IPERF_UDP, direction="up", traffic=spec, interval=0.5)
    assert (run.lost_percent, run.lost_packets, run.packets) == (5.0, 50, 1000)
    assert run.retransmits is None and run.mbps == pytest.approx(0.076)
    data = run.to_json()
    assert (data["lost_percent"], data["lost_packets"], data["packets"]) == (5.0, 50, 1000)
    # No lost_percent in the report: computed from the counts.
    received = {k: v for k, v in IPERF_UDP["end"]["sum_received"].items() if k != "lost_percent"}
    report = {"end": {"sum_received": received}}
    assert parse_iperf(report, direction="up", traffic=spec).lost_percent == pytest.approx(5.0)


def _voice_results() -> dict[str, ScenarioResult]:
    results = {}
    for name, lost in (("rec-voice", 0.5), ("rec-voice-redundant", 0.0), ("rec-voice-off", 5.0)):
        runs = [
            RunResult(
                mbps=0.08,
                samples=[(0.5, 0.08)],
                lost_percent=lost + k,
                lost_packets=int((lost + k) * 10),
                packets=1000,
            )
            for k in range(3)
        ]
        result = ScenarioResult(load_scenario(name))
        result.series["braid"] = SeriesResult("braid", runs)
        results[name] = result
    return results


def test_udp_tables_and_voice_summary() -> None:
    results = _voice_results()
    table = markdown_table(results["rec-voice-off"])
    assert "lost % (lost/sent datagrams)" in table
    assert "| braid | 0.080 | 3 (0.080-0.080) | - | 6.00 (180/3000) |" in table
    case = next(c for c in CASES if c.key == "rec-voice")
    assert case.summary is not None
    text = case.summary(case, results)
    assert "rec-voice (NACK) 1.50 %" in text
    assert "rec-voice-redundant (redundant scheduler) 1.00 %" in text
    assert "rec-voice-off (recovery off) 6.00 %" in text


def test_recovery_summary_states_medians_and_ratio() -> None:
    case = next(c for c in CASES if c.key == "rec-loss")
    results = {}
    for name, mbps in (("rec-loss", 30.0), ("rec-loss-timeout", 24.0), ("rec-loss-off", 12.0)):
        result = ScenarioResult(load_scenario(name))
        result.series["braid"] = SeriesResult(
            "braid", [RunResult(mbps=mbps + k, samples=[]) for k in (-1, 0, 1)]
        )
        results[name] = result
    assert case.summary is not None
    text = case.summary(case, results)
    assert "rec-loss (NACK + predictor) 30.0 Mbit/s" in text
    assert "rec-loss-off (recovery off) 12.0 Mbit/s" in text
    assert "rec-loss (NACK + predictor) ÷ rec-loss-off = 2.50" in text
    assert "rec-loss-timeout (NACK, proof/timeout rule) ÷ rec-loss-off = 2.00" in text
    del results["rec-loss-off"]
    assert "no result" in case.summary(case, results)


def test_recovery_scenarios() -> None:
    expected = {
        "rec-loss": {"nack": True, "loss_predictor": True},
        "rec-loss-off": {"nack": False},
        "rec-loss-timeout": {"nack": True, "loss_predictor": False},
        "rec-loss-auto": {},  # the default, nack = "auto"
        "rec-burst": {"nack": True, "loss_predictor": True},
        "rec-burst-off": {"nack": False},
        "rec-burst-timeout": {"nack": True, "loss_predictor": False},
        "rec-voice": {"nack": True},
        "rec-voice-fec": {"fec": "on"},
        "rec-voice-redundant": {"scheduler": "redundant"},
        "rec-voice-off": {"nack": False},
    }
    for name, braid in expected.items():
        scenario = load_scenario(name)
        assert scenario.braid == braid, name
        assert (scenario.cc, scenario.repeat, scenario.duration) == ("cubic", 3, 20)
        assert len(scenario.links) == 2
        voice = name.startswith("rec-voice")
        for link in scenario.links:
            shape = link.shape
            assert (shape.rate_up_bps, shape.rate_down_bps, shape.delay) == (20e6, 20e6, 0.02)
            assert shape.loss == pytest.approx(0.05 if voice else 0.02)
            assert shape.loss_burst == (4.0 if name.startswith("rec-burst") else None)
        assert str(scenario.traffic) == ("udp:80kbit:200" if voice else "tcp")
        full = name in ("rec-loss", "rec-burst")
        assert scenario.series == (("links", "mptcp", "braid") if full else ("braid",))
    keys = {c.key: c.scenarios for c in CASES}
    assert keys["rec-loss"] == ("rec-loss", "rec-loss-timeout", "rec-loss-auto", "rec-loss-off")
    assert keys["rec-burst"] == ("rec-burst", "rec-burst-timeout", "rec-burst-off")
    assert keys["rec-voice"] == (
        "rec-voice",
        "rec-voice-fec",
        "rec-voice-redundant",
        "rec-voice-off",
    )


def test_partial_evaluation_keeps_the_other_cases_sections_in_case_order() -> None:
    from braid.lab.evaluation import assemble, hand_notes, old_sections

    report = (
        "# braid evaluation\n\nheader\n\n<!-- notes -->\n(Hand note: kept.)\n<!-- /notes -->\n\n"
        "## Case B\n\nb numbers\n\n---\n\n## Case A\n\na numbers\n\n"
        "# Earlier run: old\n\n## (2026-11-22) Case C\n\nc\n\n## (2026-11-22) Retired\n\nr\n"
    )
    assert hand_notes(report) == "<!-- notes -->\n(Hand note: kept.)\n<!-- /notes -->"
    assert hand_notes("# braid evaluation\n\nno notes\n") == ""
    kept = old_sections(report)
    assert [title for title, _ in kept] == ["Case B", "Case A", "", "Case C", "Retired"]
    assert kept[0][1] == "## (kept from an earlier run) Case B\n\nb numbers"  # no "---"
    assert kept[3][1].startswith("## (2026-11-22) Case C")  # an older label stays
    # Case A is re-run: its new section replaces the old one; every section comes in the
    # cases' order; a section of no case (and the part heading) follows, as it was.
    text = assemble({"Case A": "## Case A\n\nnew a\n"}, kept, ["Case A", "Case B", "Case C"])
    assert "a numbers" not in text
    assert text.index("new a") < text.index("b numbers") < text.index("\nc\n")
    assert text.index("\nc\n") < text.index("# Earlier run: old") < text.index("Retired")
    assert old_sections("# braid evaluation\n\nno sections\n") == []


def test_every_evaluated_section_says_when_and_at_which_commit() -> None:
    import subprocess

    from braid.lab.evaluation import provenance

    line = provenance()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert line.startswith("\n*Measured 2") and f" at {commit}" in line, line


def test_local_changes_are_braids_own_files_not_the_report(tmp_path: Path) -> None:
    """A report and its plots rewritten by an earlier `--only` run leave the next run's
    sections at the commit; a change to the package (a scenario, the code) does not."""
    import shutil
    import subprocess
    import sys

    import braid

    repo = tmp_path / "checkout"
    shutil.copytree(
        Path(braid.__file__).parent,
        repo / "src" / "braid",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    (repo / "docs").mkdir()
    (repo / "docs" / "evaluation.md").write_text("# report\n")

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)

    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "t")

    def stamp() -> str:
        return subprocess.run(
            [
                sys.executable,
                "-c",
                "from braid.lab.evaluation import provenance; print(provenance())",
            ],
            env={**os.environ, "PYTHONPATH": str(repo / "src")},
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    assert " at " in stamp() and "+ local changes" not in stamp()
    (repo / "docs" / "evaluation.md").write_text("# report, rewritten by a run\n")
    assert "+ local changes" not in stamp()
    scenario = next((repo / "src" / "braid").rglob("*.toml"))
    scenario.write_text(scenario.read_text() + "\n# changed\n")
    assert "+ local changes" in stamp()


def test_return_summary_times_each_run_from_the_return() -> None:
    case = next(c for c in CASES if c.key == "res-return")
    assert case.summary is not None
    results = {}
    for name in case.scenarios:
        scenario = load_scenario(name)
        assert [(e.at, e.action, e.link) for e in scenario.events] == [
            (6, "cut", 2),
            (13, "restore", 2),
        ]
        result = ScenarioResult(scenario)

        def run(back: float, stall: float) -> RunResult:
            # 50 Mbit/s before, 18 during (with a stall right after the cut), 50 again
            # `back` seconds after the return at 13 s
            samples = []
            for k in range(1, 81):
                t = k * 0.25
                if t <= 6:
                    v = 50.0
                elif t <= 6 + stall:
                    v = 0.0
                elif t <= 13 + back:
                    v = 18.0
                else:
                    v = 50.0
                samples.append((t, v))
            return RunResult(mbps=30.0, samples=samples)

        result.series["braid"] = SeriesResult(
            "braid", [run(1.0, 0.25), run(2.0, 0.5), run(4.0, 0.25)]
        )
        result.series["mptcp"] = SeriesResult("mptcp", [run(3.0, 1.0)] * 3)
        results[name] = result
    text = case.summary(case, results)
    assert "res-return (one CUBIC flow): braid 2.25 s (runs: 1.25, 2.25, 4.25 s)" in text, text
    assert "longest stall 0.25 s; mptcp 3.25 s" in text, text
    assert "res-return-p4 (four CUBIC flows)" in text
    del results["res-return-bbr"]
    assert "res-return-bbr (one BBR flow): no result" in case.summary(case, results)


def test_cut_summary_times_each_run_from_the_cut() -> None:
    case = next(c for c in CASES if c.key == "res-cut")
    assert case.summary is not None
    results = {}
    for name in case.scenarios:
        scenario = load_scenario(name)
        assert [(e.at, e.action, e.link) for e in scenario.events] == [
            (24, "cut", 2),
            (31, "restore", 2),
        ]
        result = ScenarioResult(scenario)

        def run(back: float, retransmits: int) -> RunResult:
            # 50 Mbit/s before the cut at 24 s, nothing for `back` seconds, then 18
            samples = []
            for k in range(1, 145):
                t = k * 0.25
                v = 50.0 if t <= 24 else 0.0 if t <= 24 + back else 18.0
                samples.append((t, v if t <= 31 else 50.0))
            return RunResult(mbps=40.0, samples=samples, retransmits=retransmits)

        result.series["braid"] = SeriesResult(
            "braid", [run(0.25, 500), run(0.0, 400), run(0.75, 700)]
        )
        result.series["mptcp"] = SeriesResult("mptcp", [run(1.0, 90)] * 3)
        results[name] = result
    text = case.summary(case, results)
    # a stall of `back` seconds, then the level: `back` seconds lost
    assert "res-cut-late (upload): braid 0.25 s (runs: 0.25, 0.00, 0.75 s)" in text, text
    assert "longest stall 0.25 s, 500 TCP retransmissions; mptcp 1.00 s" in text, text
    del results["res-cut-late-down"]
    assert "res-cut-late-down (download): no result" in case.summary(case, results)


def test_event_finding_compares_the_level_after_a_drop_with_the_links_alone() -> None:
    """agg-drop-bbr: link 2 falls from 40 to 10 Mbit/s at 10 s. A braid run stuck at link
    1's 18 Mbit/s after it reaches "80 % of its own level" at once; measured against what
    the links carried alone after the drop (19 + 9.5), it is 63 % and never reaches 80 %
    of it, while a run that climbs to 27 does so 3 s after the drop."""
    scenario = load_scenario("agg-drop-bbr")
    assert [(e.at, e.link) for e in scenario.events] == [(10, 2)]
    result = ScenarioResult(scenario)

    def run(before: float, after: float, climb_at: float | None = None) -> RunResult:
        samples = []
        for k in range(1, 81):
            t = k * 0.25
            if t <= 10:
                v = before
            elif climb_at is not None and t > 10 + climb_at:
                v = 27.0
            else:
                v = after
            samples.append((t, v))
        return RunResult(mbps=30.0, samples=samples)

    result.series["link-1"] = SeriesResult("link-1", [run(19.0, 19.0)] * 3)
    result.series["link-2"] = SeriesResult("link-2", [run(38.0, 9.5)] * 3)
    result.series["braid"] = SeriesResult("braid", [run(55.0, 18.0)] * 3)
    result.series["mptcp"] = SeriesResult("mptcp", [run(55.0, 18.0, climb_at=3.0)] * 3)
    text = event_finding(result)
    lines = {line.split(":")[0]: line for line in text.splitlines()}
    assert "reached 80 % of the level after the event 0.25 s after it" in lines["- braid"]
    assert (
        "(63 % of the links' 28.5 alone after it; 80 % of theirs never after it)"
        in (lines["- braid"])
    ), text
    assert "80 % of theirs 3.25 s after it" in lines["- mptcp"], text
    assert "links'" not in lines["- link-1"]
