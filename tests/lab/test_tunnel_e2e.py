"""Issue 2's end-to-end test: a real braid tunnel over two 20 Mbit/s links.

client - local portal - 2 links (tbf, 20 Mbit/s each) - remote portal - server, both portals
real ``braid up`` processes from config files. Ping goes through the tunnel, and one iperf3
TCP flow through it gets at least 1.7x what one link alone gets (both numbers printed).
"""

from __future__ import annotations

import json

import pytest

from braid.lab.emulator import Emulator, LinkShape
from braid.lab.netns import ns_cmd, python_cmd, run
from braid.lab.portals import TUNNEL_NAME, Portals
from braid.lab.topology import SERVER_IP, Topology
from braid.lab.traffic import IperfServer, TrafficSpec, iperf_client_argv, parse_iperf

pytestmark = [pytest.mark.root, pytest.mark.level]

LINK = LinkShape(rate_up_bps=20e6, rate_down_bps=20e6, delay=0.005)
SECONDS = 8
ONE_LINK_GOODPUT = 20 * 0.956  # TCP goodput of a 20 Mbit/s link (1500-byte frames)


def tcp_mbps(topo: Topology) -> float:
    argv = iperf_client_argv(
        TrafficSpec("tcp"), direction="up", cc="cubic", duration=SECONDS, interval=1
    )
    report = json.loads(run(ns_cmd(topo.client, argv), timeout=SECONDS + 30))
    return parse_iperf(report, direction="up", traffic=TrafficSpec("tcp")).mbps


def test_tunnel_over_two_links_beats_one_link() -> None:
    with Topology(2) as topo, Emulator(topo, [LINK, LINK]), IperfServer(topo):
        topo.route_via(1)
        one_link = tcp_mbps(topo)
        topo.route_via(None)
        with Portals(topo, [LINK, LINK]) as portals:
            pings = json.loads(
                run(
                    ns_cmd(
                        topo.client,
                        python_cmd(
                            "braid.lab.ping", SERVER_IP, "--interval", "0.1", "--duration", "1"
                        ),
                    )
                )
            )
            assert pings["received"] >= 9, pings
            routes = run(["ip", "-n", topo.local, "route", "get", SERVER_IP])
            assert TUNNEL_NAME in routes  # the traffic really goes through the tunnel
            tunnel = tcp_mbps(topo)
            assert portals.alive()
        assert portals.exit_codes == {"local": 0, "remote": 0}
    print(
        f"\none link alone: {one_link:.1f} Mbit/s; braid over both links: {tunnel:.1f} Mbit/s ({tunnel / one_link:.2f}x)"
    )
    # The baseline only has to show that the emulated link works: a CUBIC flow over one
    # relayed link came out at 17.3 Mbit/s in one CI run (18.9-19.0 in three runs here).
    # The tunnel is held to 1.7x the larger of that baseline and 90 % of a link's
    # goodput, so a slow baseline cannot make the tunnel's bar easier.
    assert one_link == pytest.approx(ONE_LINK_GOODPUT, rel=0.15)
    assert tunnel >= 1.7 * max(one_link, 0.9 * ONE_LINK_GOODPUT)
