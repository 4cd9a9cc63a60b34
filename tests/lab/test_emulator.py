"""Emulator accuracy on a 1-link lab with plain routing: rate, delay, jitter, loss, cuts.

Bounds (docs/lab.md): rate within 5 %, one-way delay within 1 ms, loss within 4 standard
deviations of the binomial count (bursty loss: of the two-state chain's count, and bursts
clearly longer than one frame). Numbers are printed (pytest -s) for the documentation.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from braid.lab.emulator import Emulator
from braid.lab.experiment import host_fidelity
from braid.lab.netns import LabError, host_cpu_ticks, list_netns, ns_cmd, python_cmd, run
from braid.lab.relay import gilbert_elliott
from braid.lab.topology import SERVER_IP, Topology
from braid.lab.traffic import (
    UDP_PAYLOAD,
    IperfServer,
    TrafficSpec,
    iperf_client_argv,
    parse_iperf,
)

pytestmark = pytest.mark.root

UDP_FRAME = UDP_PAYLOAD + 8 + 20 + 14  # iperf3 payload + UDP + IPv4 + Ethernet: what tbf counts


def ping(topo: Topology, *, count: int = 20, interval: float = 0.05) -> dict[str, Any]:
    out = run(
        ns_cmd(
            topo.client,
            python_cmd(
                "braid.lab.ping",
                SERVER_IP,
                "--interval",
                str(interval),
                "--duration",
                str(count * interval),
                "--wait",
                "0.5",
            ),
        ),
        timeout=30,
    )
    data: dict[str, Any] = json.loads(out)
    return data


def udp(topo: Topology, rate: str, seconds: float = 3.0, direction: str = "up") -> dict:  # type: ignore[type-arg]
    argv = iperf_client_argv(
        TrafficSpec.parse(f"udp:{rate}"),
        direction=direction,
        cc="cubic",
        duration=seconds,
        interval=0.5,
    )
    # iperf3's UDP test starts with one unacknowledged datagram each way and
    # never resends it: on a lossy link the run can hang (p ~ 10 % at 5 % loss).
    # Three tries make that ~0.1 %; a hang for any other reason still fails.
    for attempt in range(3):
        try:
            return json.loads(run(ns_cmd(topo.client, argv), timeout=seconds + 12))  # type: ignore[no-any-return]
        except LabError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def wire_mbps(report: dict) -> float:  # type: ignore[type-arg]
    payload = parse_iperf(report, direction="up", traffic=TrafficSpec("udp", rate_bps=1.0)).mbps
    return payload * UDP_FRAME / UDP_PAYLOAD


@pytest.mark.level
@pytest.mark.parametrize(("rate", "direction"), [(20e6, "up"), (100e6, "up"), (30e6, "down")])
def test_rate_within_5_percent(one_link, rate: float, direction: str) -> None:  # type: ignore[no-untyped-def]
    topo, emulator = one_link
    if direction == "down":
        emulator.set_link(1, rate_down_bps=rate)
    else:
        emulator.set_link(1, rate_up_bps=rate)
    # A busy host can starve the 3 s measurement (the full suite saw 17.8 of 20 and 93.5
    # of 100 once, both right again at once; on a machine whose host steals CPU time,
    # 2026-12-01, 18.97 then 16.15 of 20): up to two more measurements, and the last one
    # counts. A wrong rate is wrong every time.
    measured = []
    with IperfServer(topo):
        for _ in range(3):
            report = udp(topo, f"{rate * 1.3:.0f}bit", direction=direction)
            measured.append(wire_mbps(report))
            if measured[-1] == pytest.approx(rate / 1e6, rel=0.05):
                break
    shown = ", ".join(f"{m:.2f}" for m in measured)
    print(f"\nrate {rate / 1e6:g} Mbit/s {direction}: measured {shown} Mbit/s on the wire")
    assert measured[-1] == pytest.approx(rate / 1e6, rel=0.05)


@pytest.mark.level
def test_asymmetric_rates_and_tcp_goodput(one_link) -> None:  # type: ignore[no-untyped-def]
    topo, emulator = one_link
    emulator.set_link(1, rate_up_bps=10e6, rate_down_bps=40e6)
    results = {}
    expected = {"up": 10 * 0.956, "down": 40 * 0.956}  # (TCP goodput: 1448 of 1514 bytes)
    with IperfServer(topo, interval=0.5):
        for direction in ("up", "down"):
            argv = iperf_client_argv(
                TrafficSpec("tcp"), direction=direction, cc="cubic", duration=3, interval=0.5
            )
            # As in test_rate_within_5_percent: a busy host can starve one 3 s run (35.8 of
            # 38.2 once, on a machine half as fast as usual); the second one counts.
            for _ in range(2):
                report = json.loads(run(ns_cmd(topo.client, argv), timeout=30))
                results[direction] = parse_iperf(
                    report, direction=direction, traffic=TrafficSpec("tcp")
                ).mbps
                if results[direction] == pytest.approx(expected[direction], rel=0.05):
                    break
        # Both at once (direction "both", iperf3 --bidir): each direction as its
        # receiver saw it, the goodput and samples their sums.
        argv = iperf_client_argv(
            TrafficSpec("tcp"), direction="both", cc="cubic", duration=3, interval=0.5
        )
        assert "--bidir" in argv
        report = json.loads(run(ns_cmd(topo.client, argv), timeout=30))
        both = parse_iperf(report, direction="both", traffic=TrafficSpec("tcp"), interval=0.5)
    print(f"\nTCP goodput over 10 up / 40 down: {results}; both at once: {both.both}")
    # TCP goodput is about 1448/1514 of the line rate.
    assert results["up"] == pytest.approx(expected["up"], rel=0.05)
    assert results["down"] == pytest.approx(expected["down"], rel=0.05)
    # At once, each link direction also carries the other flow's acknowledgements, and
    # the download's wait behind the upload's data in the 10 Mbit/s queue (measured:
    # 8.7 up and 28.4 down in 3 s).
    assert both.both is not None
    up, down = both.both
    assert 0.7 * results["up"] <= up <= 1.02 * results["up"]
    assert 0.5 * results["down"] <= down <= 1.02 * results["down"]
    assert both.mbps == pytest.approx(up + down)
    assert len(both.samples) >= 4 and both.retransmits is not None
    steady = [v for t, v in both.samples if t > 1.0]
    assert sum(steady) / len(steady) == pytest.approx(up + down, rel=0.15)
    # Each run starts from the same TCP state: the kernel kept no ssthresh, cwnd or RTT
    # of these connections for the next one to the same address (by default it does, and
    # the next series' flow would leave slow start at this link's window).
    for ns in (topo.client, topo.server):
        cached = run(["ip", "-n", ns, "tcp_metrics", "show"]).strip()
        assert cached == "", f"{ns}: {cached}"


def test_delay_within_1ms(one_link) -> None:  # type: ignore[no-untyped-def]
    topo, emulator = one_link
    for delay in (0.0, 0.005, 0.025, 0.080):
        emulator.set_link(1, delay=delay)
        rtts = sorted(ping(topo)["rtt_ms"][2:])  # the first one may wait for ARP
        median = rtts[len(rtts) // 2]
        one_way_error = median / 2 - delay * 1000
        print(
            f"\ndelay {delay * 1000:g} ms: RTT median {median:.3f} ms, one-way error {one_way_error:+.3f} ms, max RTT {rtts[-1]:.3f}"
        )
        assert abs(one_way_error) < 1.0
    stats = emulator.statistics()["1/up"]
    print(f"relay lateness: p50 {stats['late_p50_us']} us, p99 {stats['late_p99_us']} us")
    assert stats["late_p50_us"] < 1000  # p99 is printed: it depends on what else runs


@pytest.mark.level
def test_delay_holds_under_load(one_link) -> None:  # type: ignore[no-untyped-def]
    """UDP at 80 % of 100 Mbit/s: the relay keeps up and the delay stays within 1 ms. A
    busy host can starve one run (1.5 % lost once, in a clean-clone suite on a machine
    half as fast as usual, which passed the same test in the run before): as in
    test_rate_within_5_percent, a second run then counts."""
    topo, emulator = one_link
    emulator.set_link(1, rate_up_bps=100e6, rate_down_bps=100e6, delay=0.010)
    with IperfServer(topo):
        for _ in range(2):
            emulator.reset_statistics()
            ticks = host_cpu_ticks()
            load = subprocess.Popen(
                ns_cmd(
                    topo.client,
                    iperf_client_argv(
                        TrafficSpec.parse("udp:80mbit"),
                        direction="up",
                        cc="cubic",
                        duration=4,
                        interval=1,
                    ),
                ),
                stdout=subprocess.PIPE,
                text=True,
            )
            try:
                rtts = sorted(ping(topo, count=40)["rtt_ms"][2:])
            finally:
                out, _ = load.communicate(timeout=30)
            report = json.loads(out)
            lost = parse_iperf(
                report, direction="up", traffic=TrafficSpec("udp", rate_bps=1.0)
            ).lost_percent
            median = rtts[len(rtts) // 2]
            steal = host_fidelity(ticks, host_cpu_ticks(), None).get("steal_percent", -1.0)
            if lost is not None and lost < 1.0 and abs(median / 2 - 10.0) < 1.0:
                break
    stats = emulator.statistics()["1/up"]
    print(
        f"\nunder 80 Mbit/s: RTT median {median:.3f} ms (2 x 10 ms), UDP lost {lost:.3f} %,"
        f" lateness p50 {stats['late_p50_us']} us, p99 {stats['late_p99_us']} us;"
        f" steal {steal:.1f} %"
    )
    assert abs(median / 2 - 10.0) < 1.0
    assert lost is not None and lost < 1.0
    assert stats["late_p50_us"] < 1000  # p99 is printed: it depends on what else runs


def test_jitter_does_not_reorder(one_link) -> None:  # type: ignore[no-untyped-def]
    topo, emulator = one_link
    emulator.set_link(1, delay=0.020, jitter=0.010)
    with IperfServer(topo):
        report = udp(topo, "5mbit", seconds=2)
    stream = report["end"]["streams"][0]["udp"]
    rtts = ping(topo, count=40)["rtt_ms"][2:]
    spread = max(rtts) - min(rtts)
    print(
        f"\njitter 10 ms: out of order {stream['out_of_order']}, RTT {min(rtts):.1f}-{max(rtts):.1f} ms"
    )
    assert stream["out_of_order"] == 0
    assert 5.0 < spread < 45.0
    assert min(rtts) > 19.0


def test_loss_within_statistical_bound(one_link) -> None:  # type: ignore[no-untyped-def]
    """5 % independent loss (nftables numgen), one direction, 20000 numbered frames.

    Counted by a receiver that never drops (a forced 8 MB socket buffer), so only the
    emulator's loss is measured: iperf3's UDP count also took drops at its own socket on
    a loaded machine (8.7 % lost once with 5 % set)."""
    topo, emulator = one_link
    assert len(ping(topo, count=5)["rtt_ms"]) >= 4  # ARP resolved before any loss
    p, count = 0.05, 20_000
    emulator.set_link(1, loss=p)
    lost = sum(sequence_loss(topo, count, rate=10_000))
    emulator.set_link(1, loss=0.0)
    sigma = (p * (1 - p) / count) ** 0.5
    print(f"\nloss {p:.0%}: {lost}/{count} = {lost / count:.4f} (4 sigma = {4 * sigma:.4f})")
    assert abs(lost / count - p) < 4 * sigma


SEQ_PORT = 5301
SEQ_RECEIVER = """
import json, socket, struct, sys
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)  # SO_RCVBUFFORCE: never drop at the receiver
sock.bind((sys.argv[1], int(sys.argv[2])))
sock.settimeout(10.0)
print("ready", flush=True)
seen = []
try:
    while True:
        seen.append(struct.unpack("!I", sock.recv(2048)[:4])[0])
        sock.settimeout(1.0)
except OSError:
    pass
print(json.dumps(seen), flush=True)
"""
SEQ_SENDER = """
import socket, struct, sys, time
dest, port, count, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
pad = bytes(100)
start = time.monotonic()
for seq in range(count):
    if seq % 10 == 0:
        wait = start + seq / rate - time.monotonic()
        if wait > 0:
            time.sleep(wait)
    sock.sendto(struct.pack("!I", seq) + pad, (dest, port))
"""


def sequence_loss(topo: Topology, count: int, rate: float) -> list[bool]:
    """Send ``count`` numbered datagrams client -> server at ``rate``/s; which were lost."""
    receiver = subprocess.Popen(
        ns_cmd(topo.server, [sys.executable, "-c", SEQ_RECEIVER, SERVER_IP, str(SEQ_PORT)]),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert receiver.stdout is not None and receiver.stdout.readline().strip() == "ready"
        sender = [sys.executable, "-c", SEQ_SENDER, SERVER_IP, str(SEQ_PORT)]
        run(ns_cmd(topo.client, [*sender, str(count), f"{rate:g}"]), timeout=60)
        out, _ = receiver.communicate(timeout=30)
    finally:
        if receiver.poll() is None:
            receiver.kill()
            receiver.wait()
    seen = set(json.loads(out.strip().splitlines()[-1]))
    return [seq not in seen for seq in range(count)]


def test_bursty_loss_rate_and_burst_length(one_link) -> None:  # type: ignore[no-untyped-def]
    """5 % loss in bursts of 4 (Gilbert-Elliott in the relay), one direction, 20000 frames."""
    topo, emulator = one_link
    assert len(ping(topo, count=5)["rtt_ms"]) >= 4  # ARP resolved before any loss
    p, burst, count = 0.05, 4.0, 20_000
    emulator.set_link(1, loss=p, loss_burst=burst)
    emulator.reset_statistics()
    lost = sequence_loss(topo, count, rate=10_000)
    stats = emulator.statistics()["1/up"]
    emulator.set_link(1, loss=0.0, loss_burst=None)
    runs = [len(list(group)) for key, group in itertools.groupby(lost) if key]
    measured = sum(lost) / count
    mean_run = sum(runs) / len(runs)
    # Successive frames are correlated: the variance of the loss rate of a two-state chain is
    # the binomial one times (1 + r) / (1 - r), r = 1 - P(good->bad) - P(bad->good).
    enter, leave = gilbert_elliott(p, burst)
    r = 1.0 - enter - leave
    sigma = (p * (1 - p) / count * (1 + r) / (1 - r)) ** 0.5
    print(
        f"\nbursty loss {p:.0%}, mean burst {burst:g}: {sum(lost)}/{count} = {measured:.4f} "
        f"(4 sigma = {4 * sigma:.4f}), {len(runs)} bursts, mean burst {mean_run:.2f} "
        f"(longest {max(runs)}); relay dropped {stats['dropped_loss']} of {stats['frames']}"
    )
    assert abs(measured - p) < 4 * sigma
    assert mean_run > 2.5  # independent 5 % loss would give about 1.05
    assert abs(stats["dropped_loss"] - sum(lost)) <= 5  # the relay dropped them, nothing else


def test_cut_is_silence_and_restore_returns(one_link) -> None:  # type: ignore[no-untyped-def]
    topo, emulator = one_link
    emulator.set_link(1, delay=0.005)
    assert len(ping(topo, count=5)["rtt_ms"]) >= 4
    emulator.cut(1)
    cut = ping(topo, count=10)
    assert cut["sent"] == 10 and cut["received"] == 0
    # Silence, not an error: the link stays up on both portals.
    for ns in (topo.local, topo.remote):
        assert "state UP" in run(["ip", "-n", ns, "link", "show", "wan1"])
    emulator.restore(1)
    assert len(ping(topo, count=10)["rtt_ms"]) >= 9


def test_topologies_are_distinct_and_removed() -> None:
    with Topology(1) as first, Topology(2) as second:
        present = set(list_netns())
        assert set(first.namespaces) <= present and set(second.namespaces) <= present
        assert not set(first.namespaces) & set(second.namespaces)
        names = first.namespaces + second.namespaces
    assert not set(names) & set(list_netns())


def test_removed_after_exception() -> None:
    with pytest.raises(RuntimeError), Topology(1) as topo:
        names = topo.namespaces
        raise RuntimeError("boom")
    assert not set(names) & set(list_netns())


def test_clean_removes_leftovers() -> None:
    leftover = f"blab-{os.getpid() % 0xFFFFFF:06x}-xx"
    run(["ip", "netns", "add", leftover])
    try:
        out = subprocess.run(
            [sys.executable, "-m", "braid.lab", "clean"], capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0
        assert f"removed {leftover}" in out.stdout
        assert leftover not in list_netns()
    finally:
        run(["ip", "netns", "del", leftover], check=False)


def test_not_root_is_one_line_exit_2() -> None:
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable]
    if not shutil.which("setpriv"):
        pytest.skip("needs setpriv (util-linux)")
    if subprocess.run([*nobody, "-c", "import braid.lab.cli"], capture_output=True).returncode:
        pytest.skip("the checkout is not readable by nobody")
    out = subprocess.run(
        [*nobody, "-m", "braid.lab", "run", "quick"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1
    assert "needs root" in out.stderr


def test_missing_iperf3_is_one_line_exit_2(tmp_path: Path) -> None:
    """A PATH with every tool but iperf3: one line saying how to install it."""
    for tool in ("ip", "tc", "nft", "ethtool", "sysctl", "ss", "mptcpize"):
        found = shutil.which(tool)
        if found:
            (tmp_path / tool).symlink_to(found)
    env = {**os.environ, "PATH": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-m", "braid.lab", "run", "quick"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert out.returncode == 2
    assert out.stderr == "braid lab: needs iperf3: install with apt-get install -y iperf3\n"


def test_bad_emulator_setup_is_an_error() -> None:
    with Topology(1) as topo, pytest.raises(LabError):
        Emulator(topo, [])
