"""Issue 6 in the lab: inner IPv6 and IPv4 over outer IPv4 and IPv6 paths, in any mix.

An IPv6-enabled lab (fd00::/16 next to the IPv4 plan) with two 20 Mbit/s links; each case
runs one iperf3 TCP flow from the client to the server through the tunnel, to the server's
IPv4 or IPv6 address (the inner family), with the paths on IPv4, on IPv6 or one of each
(the outer family). Every mix must aggregate both links.
"""

from __future__ import annotations

import json

import pytest

from braid.lab.emulator import Emulator, LinkShape
from braid.lab.netns import ns_cmd, run
from braid.lab.portals import Portals
from braid.lab.topology import SERVER_IP, SERVER_IP6, Topology
from braid.lab.traffic import IPERF_PORT, IperfServer

pytestmark = [pytest.mark.root, pytest.mark.level]

LINK = LinkShape(rate_up_bps=20e6, rate_down_bps=20e6, delay=0.005)
CASES = [
    ("inner4-outer6", SERVER_IP, [True, True]),
    ("inner6-outer4", SERVER_IP6, [False, False]),
    ("inner6-outer6", SERVER_IP6, [True, True]),
    ("inner6-outer-mixed", SERVER_IP6, [False, True]),
    ("inner4-outer-mixed", SERVER_IP, [True, False]),
]


def test_every_mix_of_inner_and_outer_families() -> None:
    results: dict[str, float] = {}
    with Topology(2, ipv6=True) as topo, Emulator(topo, [LINK, LINK]):
        for name, target, outer6 in CASES:
            # A server per case: the portals stop as soon as the client is done, and the
            # client's last segment (its FIN) may still be in the tunnel then. The server
            # would wait for it and answer the next case "the server is busy running a
            # test" (a clean-clone suite, 2026-11-30, twice in a row).
            with IperfServer(topo), Portals(topo, [LINK, LINK], outer6=outer6) as portals:
                argv = ["iperf3", "-c", target, "-p", str(IPERF_PORT), "-t", "4", "-C", "cubic"]
                argv += ["-J"]
                argv += ["--connect-timeout", "3000"]
                # One full-suite run once got an iperf3 error report (no result) here, and
                # passed alone right after: one more try, then the error is the failure.
                for attempt in range(2):
                    report = json.loads(run(ns_cmd(topo.client, argv), timeout=40))
                    if "error" not in report or attempt:
                        break
                    print(f"\n{name}: iperf3: {report['error']}; once more")
                assert "error" not in report, (name, report["error"])
                bps = report["end"]["sum_received"]["bits_per_second"]
                results[name] = bps / 1e6
                assert portals.alive()
    print("\n" + ", ".join(f"{k}: {v:.1f} Mbit/s" for k, v in results.items()))
    for name, mbps in results.items():
        assert mbps > 24.0, (name, mbps)  # both 20 Mbit/s links carry it
