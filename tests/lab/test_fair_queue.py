"""`fair_queue` in the lab: a fetch next to a BBR download gets a share of the links.

Two links, 10 Mbit/s 10 ms and 40 Mbit/s 40 ms. One BBR iperf3 download runs through
braid; 11 s into it (after its first PROBE_RTT, from which "bulk" equalization lets it
fill both links), curl in the client namespace fetches 2 MB from an HTTP server in the
server namespace, three times. Without `fair_queue` the fetch shares one FIFO per path
with the download and gets what the download leaves: 2.6-3.9 s a fetch (this test with
`fair_queue` false; the bench, `bench/bench_short_tcp.py --modes bulk --background down`,
2.2-3.6 s). With it, each flow waits in its own queue and gets its turn: 1.04-1.16 s,
the download 39.5 Mbit/s (39.8 without).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import time
from pathlib import Path

import pytest

from braid.lab.emulator import Emulator, LinkShape
from braid.lab.netns import ns_cmd
from braid.lab.portals import Portals
from braid.lab.topology import SERVER_IP, Topology
from braid.lab.traffic import (
    IperfServer,
    TrafficSpec,
    curl_fetch,
    http_server_argv,
    iperf_client_argv,
)

pytestmark = [pytest.mark.root, pytest.mark.level]

LINKS = [
    LinkShape(rate_up_bps=10e6, rate_down_bps=10e6, delay=0.010),
    LinkShape(rate_up_bps=40e6, rate_down_bps=40e6, delay=0.040),
]
HTTP_PORT = 8093
SIZE = 2_000_000


def _fetch(client: str) -> float:
    """Seconds to fetch the 2 MB file once."""
    fetch = curl_fetch(client, f"http://{SERVER_IP}:{HTTP_PORT}/file", timeout=20)
    assert fetch.size == SIZE
    return fetch.total


def test_a_fetch_next_to_a_bbr_download_gets_its_share(tmp_path: Path) -> None:
    www = tmp_path / "www"
    www.mkdir()
    (www / "file").write_bytes(os.urandom(SIZE))
    times: list[float] = []
    with (
        Topology(2) as topo,
        Emulator(topo, LINKS),
        Portals(topo, LINKS, {"fair_queue": True}),
        IperfServer(topo),
    ):
        server = topo.spawn(topo.server, http_server_argv(str(www), HTTP_PORT))
        bulk = None
        try:
            time.sleep(2.0)  # both paths up, their delays measured
            argv = iperf_client_argv(
                TrafficSpec("tcp"), direction="down", cc="bbr", duration=20, interval=1.0
            )
            bulk = subprocess.Popen(ns_cmd(topo.client, argv), stdout=subprocess.PIPE, text=True)
            time.sleep(11.0)
            for _ in range(3):
                times.append(_fetch(topo.client))
                time.sleep(0.3)
            out, _ = bulk.communicate(timeout=60)
        finally:
            if bulk is not None and bulk.poll() is None:
                bulk.kill()
                bulk.wait()
            topo.stop(server)
    rate = json.loads(out)["end"]["sum_received"]["bits_per_second"] / 1e6
    print(f"\n2 MB fetches next to a BBR download: {times} s; the download {rate:.1f} Mbit/s")
    assert statistics.median(times) < 1.8, times
    assert rate > 30, rate  # (the links carry about 46; the download keeps most of it)
