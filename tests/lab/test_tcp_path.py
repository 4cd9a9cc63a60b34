"""Issue 6 in the lab: a session mixing a UDP path and a TCP path (for networks that block
UDP). Link 1 carries braid over UDP, link 2 over TCP (length-prefixed frames); one iperf3
TCP flow through the tunnel must get more than either link alone can carry, pings must
pass, and the TCP path must carry its share (the remote portal accepted it).
"""

from __future__ import annotations

import json

import pytest

from braid.lab.emulator import Emulator, LinkShape
from braid.lab.netns import ns_cmd, python_cmd, run
from braid.lab.portals import Portals
from braid.lab.topology import SERVER_IP, Topology
from braid.lab.traffic import IperfServer, TrafficSpec, iperf_client_argv, parse_iperf

pytestmark = [pytest.mark.root, pytest.mark.level]

LINK = LinkShape(rate_up_bps=20e6, rate_down_bps=20e6, delay=0.005)


@pytest.mark.parametrize("direction", ["up", "down"])
def test_udp_and_tcp_paths_in_one_session(direction: str) -> None:
    with (
        Topology(2) as topo,
        Emulator(topo, [LINK, LINK]),
        IperfServer(topo),
        Portals(topo, [LINK, LINK], transports=["udp", "tcp"]) as portals,
    ):
        pings = json.loads(
            run(
                ns_cmd(
                    topo.client,
                    python_cmd("braid.lab.ping", SERVER_IP, "--interval", "0.1", "--duration", "1"),
                )
            )
        )
        assert pings["received"] >= 9, pings
        conns = run(ns_cmd(topo.remote, ["ss", "-tn", "state", "established"]))
        assert f"{topo.links[1].local_ip}:" in conns  # the TCP path is up
        argv = iperf_client_argv(
            TrafficSpec("tcp"), direction=direction, cc="cubic", duration=8, interval=1
        )
        report = json.loads(run(ns_cmd(topo.client, argv), timeout=60))
        mbps = parse_iperf(report, direction=direction, traffic=TrafficSpec("tcp")).mbps
        print(f"\nUDP + TCP path, one CUBIC flow {direction}: {mbps:.1f} Mbit/s (one link: ~19)")
        assert mbps > 24.0  # more than one 20 Mbit/s link
        assert portals.alive()
