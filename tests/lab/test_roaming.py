"""Issue 6 in the lab: NAT rebinding. The local portal's source port changes under traffic
and the remote portal follows after the first authenticated datagram from the new address.

A NAT (nftables SNAT in the local portal's namespace, on link 1) maps the portal's socket
to source port 40001, then to 40002: each change takes effect when the conntrack table is
flushed (pyroute2), as a home router's mapping changes after a reboot or timeout; like a
NAT, it drops unsolicited inbound datagrams (to the old mapping). Pings
run through the tunnel all along; the remote portal logs the move, and almost no ping is
lost (the other link carries on; the moved path is back within a round trip).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from braid.lab.emulator import Emulator, LinkShape
from braid.lab.netns import ns_cmd, python_cmd
from braid.lab.portals import PORT, Portals
from braid.lab.topology import SERVER_IP, Topology

pytestmark = pytest.mark.root

LINK = LinkShape(rate_up_bps=20e6, rate_down_bps=20e6, delay=0.005)
FLUSH = "from pyroute2 import Conntrack\nwith Conntrack() as ct:\n    ct.flush()\n"


def _nat(topo: Topology, port: int) -> None:
    link = topo.links[0]
    rules = f"""
table ip braid_nat_test
delete table ip braid_nat_test
table ip braid_nat_test {{
    chain post {{
        type nat hook postrouting priority 100;
        oifname "{link.local_if}" udp dport {PORT} snat to {link.local_ip}:{port}
    }}
    chain in {{
        type filter hook input priority 0;
        iifname "{link.local_if}" udp sport {PORT} ct state new drop
    }}
}}
"""
    subprocess.run(ns_cmd(topo.local, ["nft", "-f", "-"]), input=rules, text=True, check=True)
    subprocess.run(ns_cmd(topo.local, [sys.executable, "-c", FLUSH]), check=True)


def test_remote_follows_a_nat_rebinding() -> None:
    with (
        Topology(2) as topo,
        Emulator(topo, [LINK, LINK]),
        Portals(topo, [LINK, LINK]) as portals,
    ):
        pinger = topo.spawn(
            topo.client,
            python_cmd("braid.lab.ping", SERVER_IP, "--interval", "0.05", "--duration", "6"),
        )
        time.sleep(1.0)
        _nat(topo, 40001)
        time.sleep(2.0)
        _nat(topo, 40002)
        out, _ = pinger.communicate(timeout=20)
        pings = json.loads(out)
        log = portals.log("remote").read_text()
        assert f"moved to {topo.links[0].local_ip}:40001" in log, log
        assert f"moved to {topo.links[0].local_ip}:40002" in log, log
        print(f"\npings through two NAT rebindings: {pings['received']}/{pings['sent']}")
        assert pings["received"] >= pings["sent"] - 3
        assert portals.alive()
