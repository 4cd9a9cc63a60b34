"""Issue 6 in the lab: a portal killed (SIGKILL) and started again; traffic resumes.

Both portals are real ``braid up`` processes over two 20 Mbit/s links. One of them is
killed, left dead for a second, and started again from the same config; the client's pings
must reach the server through the tunnel again within 5 s of the restart (the issue's
bound), and a TCP flow must then run through it.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from braid.lab.emulator import Emulator, LinkShape
from braid.lab.netns import ns_cmd, python_cmd, run
from braid.lab.portals import Portals
from braid.lab.topology import SERVER_IP, Topology
from braid.lab.traffic import IperfServer, TrafficSpec, iperf_client_argv, parse_iperf

pytestmark = [pytest.mark.root, pytest.mark.level]

LINK = LinkShape(rate_up_bps=20e6, rate_down_bps=20e6, delay=0.005)


def _first_reply(topo: Topology, within: float) -> bool:
    argv = python_cmd(
        "braid.lab.ping",
        SERVER_IP,
        "--interval",
        "0.05",
        "--duration",
        f"{within:g}",
        "--wait",
        "0.2",
        "--until-reply",
    )
    result = subprocess.run(ns_cmd(topo.client, argv), capture_output=True, timeout=within + 10)
    return result.returncode == 0


@pytest.mark.parametrize("role", ["remote", "local"])
def test_a_killed_portal_restarts_and_traffic_resumes(role: str) -> None:
    with (
        Topology(2) as topo,
        Emulator(topo, [LINK, LINK]),
        IperfServer(topo),
        Portals(topo, [LINK, LINK]) as portals,
    ):
        portals.kill(role)
        time.sleep(1.0)
        assert not _first_reply(topo, 0.5)  # the tunnel is really down
        portals.restart(role)
        started = time.monotonic()
        assert _first_reply(topo, 8.0), "no ping through the tunnel 8 s after the restart"
        resumed = time.monotonic() - started
        print(f"\n{role} portal restarted: traffic resumed after {resumed:.2f} s")
        assert resumed <= 5.0
        argv = iperf_client_argv(
            TrafficSpec("tcp"), direction="up", cc="cubic", duration=3, interval=1
        )
        report = json.loads(run(ns_cmd(topo.client, argv), timeout=40))
        mbps = parse_iperf(report, direction="up", traffic=TrafficSpec("tcp")).mbps
        print(f"TCP through the tunnel after the restart: {mbps:.1f} Mbit/s")
        assert mbps > 20.0  # both links again, well above one (19 Mbit/s)
        assert portals.alive()
