"""Head-of-line cost of a TCP path: ping through a 1-link tunnel, UDP vs TCP path, with
and without 2 % loss (the numbers quoted in docs/design-notes.md,
"TCP paths"). Root; about a minute.

    python bench/tcp_hol.py
"""

from __future__ import annotations

import json

from braid.lab.emulator import Emulator, LinkShape
from braid.lab.netns import ns_cmd, python_cmd, run
from braid.lab.portals import Portals
from braid.lab.topology import SERVER_IP, Topology


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    for transport in ("udp", "tcp"):
        for loss in (0.0, 0.02):
            shape = LinkShape(rate_up_bps=20e6, rate_down_bps=20e6, delay=0.010, loss=loss)
            with (
                Topology(1) as topo,
                Emulator(topo, [shape]),
                Portals(topo, [shape], transports=[transport]),
            ):
                argv = python_cmd(
                    "braid.lab.ping", SERVER_IP, "--interval", "0.02", "--duration", "10"
                )
                pings = json.loads(run(ns_cmd(topo.client, argv), timeout=40))
            rtts = pings["rtt_ms"]
            print(
                f"{transport} path, loss {loss:.0%}: {pings['received']}/{pings['sent']} pings,"
                f" RTT p50 {quantile(rtts, 0.5):.1f} p95 {quantile(rtts, 0.95):.1f}"
                f" p99 {quantile(rtts, 0.99):.1f} max {max(rtts):.1f} ms"
            )


if __name__ == "__main__":
    main()
