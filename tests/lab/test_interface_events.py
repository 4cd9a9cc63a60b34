"""Issue 6 in the lab: interface events rebind a path at once.

The local portal's links are pinned by interface only (no source address), as a link
whose address comes from DHCP. Pings run through the tunnel while, in the local portal's
namespace, wan2 goes down (the path must be down at once, not after a silence timeout),
comes back up (the path gets a fresh socket and is up again within a second), and then
gets address events that leave its source address in place (a renewal, another address:
nothing happens), and then changes its address (a new lease: the path rebinds and the
remote portal follows the new source address). Hardly any ping may be lost.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from braid.lab.emulator import Emulator, LinkShape
from braid.lab.netns import python_cmd, run
from braid.lab.portals import Portals
from braid.lab.topology import SERVER_IP, Topology

pytestmark = pytest.mark.root

LINK = LinkShape(rate_up_bps=20e6, rate_down_bps=20e6, delay=0.005)


def _wait_for(log: Path, pattern: str, timeout: float, *, after: int = 0) -> float:
    """Seconds until `pattern` appears in `log` beyond offset `after`."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if re.search(pattern, log.read_text()[after:]):
            return time.monotonic() - start
        time.sleep(0.02)
    raise AssertionError(f"no {pattern!r} in {log} within {timeout} s:\n{log.read_text()}")


@pytest.mark.level
def test_interface_down_up_and_new_address_rebind_the_path() -> None:
    with (
        Topology(2) as topo,
        Emulator(topo, [LINK, LINK]),
        Portals(topo, [LINK, LINK], pin_source=False) as portals,
    ):
        wan2 = topo.links[1].local_if
        local_log = portals.log("local")
        pinger = topo.spawn(
            topo.client,
            python_cmd("braid.lab.ping", SERVER_IP, "--interval", "0.05", "--duration", "7"),
        )
        time.sleep(1.0)
        mark = len(local_log.read_text())
        run(["ip", "-n", topo.local, "link", "set", wan2, "down"])
        took = _wait_for(local_log, r"path 1 \(l2\) down \(link down\)", 2.0, after=mark)
        print(f"\n{wan2} down: path down after {took * 1000:.0f} ms")
        assert took < 0.25  # at once (a silence timeout would take 0.3-1 s)
        time.sleep(0.5)
        mark = len(local_log.read_text())
        run(["ip", "-n", topo.local, "link", "set", wan2, "up"])
        _wait_for(local_log, r"path 1 \(l2\) rebound", 2.0, after=mark)
        took = _wait_for(local_log, r"path 1 \(l2\) up", 3.0, after=mark)
        print(f"{wan2} up: path up after {took * 1000:.0f} ms")
        time.sleep(1.0)
        # Address events that leave the path's source address in place (a renewal of the
        # same lease, another address) must not rebind it: a rebind
        # moves the path to a new port, which costs the NAT mapping on a real link.
        mark = len(local_log.read_text())
        ip = topo.links[1].local_ip
        run(["ip", "-n", topo.local, "addr", "change", f"{ip}/24", "dev", wan2,
             "valid_lft", "3600", "preferred_lft", "3600"])  # fmt: skip
        run(["ip", "-n", topo.local, "addr", "add", "10.254.99.1/32", "dev", wan2])
        run(["ip", "-n", topo.local, "addr", "del", "10.254.99.1/32", "dev", wan2])
        time.sleep(1.0)
        assert "rebound" not in local_log.read_text()[mark:], local_log.read_text()[mark:]
        mark = len(local_log.read_text())
        new_ip = topo.links[1].local_ip.rsplit(".", 1)[0] + ".7"
        # A new lease: the old address goes, then the new one comes.
        run(["ip", "-n", topo.local, "addr", "del", f"{topo.links[1].local_ip}/24", "dev", wan2])
        _wait_for(local_log, r"path 1 \(l2\): interface \S+ has no address", 2.0, after=mark)
        run(["ip", "-n", topo.local, "addr", "add", f"{new_ip}/24", "dev", wan2])
        _wait_for(local_log, r"path 1 \(l2\) rebound", 2.0, after=mark)
        _wait_for(portals.log("remote"), rf"moved to {re.escape(new_ip)}:", 3.0)
        out, _ = pinger.communicate(timeout=20)
        pings = json.loads(out)
        print(f"pings through down, up and a new address: {pings['received']}/{pings['sent']}")
        assert pings["received"] >= pings["sent"] - 5
        assert portals.alive()
