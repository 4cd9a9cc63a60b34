"""Short TCP exchanges through braid with and without egress delay equalization (issue 5).

    flock /tmp/braid-lab.lock .venv/bin/python bench/bench_short_tcp.py [--fetches 15]
        [--rounds 2] [--modes off,tcp]

Needs root and curl. Two links, 10 Mbit/s 10 ms and 40 Mbit/s 40 ms (one-way); an HTTP
server in the server namespace, curl in the client namespace. For each `equalize` mode,
rounds interleaved: the median TCP connect time and total time of fetching 10 kB, 200 kB
and 2 MB (`--fetches` each, 0.2 s apart). With "tcp" the SYN, the SYN-ACK and every data
segment wait for the slowest path's delay, so a short exchange pays the spread each way.
Everything is torn down on exit. The results are in docs/design-notes.md, "Delay equalization".
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from braid.lab.emulator import Emulator, LinkShape
from braid.lab.netns import ns_cmd
from braid.lab.portals import Portals
from braid.lab.topology import SERVER_IP, Topology
from braid.lab.traffic import http_server_argv

LINKS = [
    LinkShape(rate_up_bps=10e6, rate_down_bps=10e6, delay=0.010),
    LinkShape(rate_up_bps=40e6, rate_down_bps=40e6, delay=0.040),
]
FILES = {"10k": 10_000, "200k": 200_000, "2m": 2_000_000}
HTTP_PORT = 8091


def _fetch_times(client: str, name: str) -> tuple[float, float]:
    """(connect, total) in ms of one curl fetch of `name`."""
    out = subprocess.run(
        ns_cmd(
            client,
            [
                "curl",
                "--silent",
                "--fail",
                "-o",
                "/dev/null",
                "-w",
                "%{time_connect} %{time_total}",
                f"http://{SERVER_IP}:{HTTP_PORT}/{name}",
            ],
        ),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.split()
    return float(out[0]) * 1000, float(out[1]) * 1000


def run_mode(mode: str, www: Path, fetches: int) -> dict[str, tuple[float, float]]:
    """Median (connect, total) ms per file with `equalize = mode`."""
    with (
        Topology(2) as topo,
        Emulator(topo, LINKS),
        Portals(topo, LINKS, {"equalize": mode}),
    ):
        server = topo.spawn(topo.server, http_server_argv(str(www), HTTP_PORT))
        try:
            time.sleep(3.0)  # both paths up, delays measured
            result = {}
            for name in FILES:
                times = []
                for _ in range(fetches):
                    times.append(_fetch_times(topo.client, name))
                    time.sleep(0.2)
                result[name] = (
                    statistics.median(t[0] for t in times),
                    statistics.median(t[1] for t in times),
                )
            return result
        finally:
            topo.stop(server)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fetches", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--modes", default="off,tcp")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="braid-short-") as tmp:
        www = Path(tmp)
        for name, size in FILES.items():
            (www / name).write_bytes(os.urandom(size))
        for _ in range(args.rounds):
            for mode in args.modes.split(","):
                result = run_mode(mode, www, args.fetches)
                print(
                    f"equalize {mode:>3}: "
                    + "; ".join(
                        f"{name} connect {c:.1f} ms, total {t:.1f} ms"
                        for name, (c, t) in result.items()
                    ),
                    flush=True,
                )


if __name__ == "__main__":
    main()
