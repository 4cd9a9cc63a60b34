"""Short TCP exchanges through braid with and without egress delay equalization (issue 5).

    flock /tmp/braid-lab.lock .venv/bin/python bench/bench_short_tcp.py [--fetches 15]
        [--rounds 2] [--modes off,tcp] [--background down]

Needs root and curl. Two links, 10 Mbit/s 10 ms and 40 Mbit/s 40 ms (one-way); an HTTP
server in the server namespace, curl in the client namespace. For each `equalize` mode,
rounds interleaved: the median TCP connect time and total time of fetching 10 kB, 200 kB
and 2 MB (`--fetches` each, 0.2 s apart). With "tcp" the SYN, the SYN-ACK and every data
segment wait for the slowest path's delay, so a short exchange pays the spread each way.
Mode "class" is the session's default "bulk" with a [[class]] of iperf3's port (5201)
given "ack"; a mode followed by "+fq" (say "bulk+fq") also sets `fair_queue = true`. `--background down` (or "up") runs one BBR iperf3 flow on port 5201 during
the fetches, started 3 s before them, and prints its mean throughput: a site's bulk
transfer while people browse. Everything is torn down on exit. The results are in
docs/design-notes.md, "Delay equalization" and "Holding the acknowledgement".
"""

from __future__ import annotations

import argparse
import json
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
from braid.lab.traffic import (
    IperfServer,
    TrafficSpec,
    curl_fetch,
    http_server_argv,
    iperf_client_argv,
)

LINKS = [
    LinkShape(rate_up_bps=10e6, rate_down_bps=10e6, delay=0.010),
    LinkShape(rate_up_bps=40e6, rate_down_bps=40e6, delay=0.040),
]
FILES = {"10k": 10_000, "200k": 200_000, "2m": 2_000_000}
HTTP_PORT = 8091
BULK_CLASS: dict[str, object] = {"name": "bulk", "match": {"ports": [5201]}, "equalize": "ack"}
LEAD = 3.0  # seconds of background flow before the first fetch


def _fetch_times(client: str, name: str) -> tuple[float, float]:
    """(connect, total) in ms of one curl fetch of `name`."""
    fetch = curl_fetch(client, f"http://{SERVER_IP}:{HTTP_PORT}/{name}")
    return fetch.connect * 1000, fetch.total * 1000


def _session(mode: str) -> tuple[dict[str, object], list[dict[str, object]]]:
    """The [session] table and [[class]] tables of a mode ("+fq": with `fair_queue`)."""
    base, _, extra = mode.partition("+")
    session: dict[str, object] = {"equalize": "bulk" if base == "class" else base}
    if extra == "fq":
        session["fair_queue"] = True
    elif extra:
        raise SystemExit(f'mode {mode!r}: after "+" only "fq" (fair_queue = true)')
    return session, [BULK_CLASS] if base == "class" else []


def run_mode(
    mode: str, www: Path, fetches: int, background: str
) -> tuple[dict[str, tuple[float, float]], float | None]:
    """Median (connect, total) ms per file with `equalize = mode`, and the background
    flow's mean Mbit/s (None without one)."""
    session, classes = _session(mode)
    with (
        Topology(2) as topo,
        Emulator(topo, LINKS),
        Portals(topo, LINKS, session, classes=classes),
        IperfServer(topo),
    ):
        server = topo.spawn(topo.server, http_server_argv(str(www), HTTP_PORT))
        bulk = None
        try:
            time.sleep(3.0)  # both paths up, delays measured
            if background != "none":
                seconds = LEAD + 1.0 + fetches * len(FILES) * 1.5
                argv = iperf_client_argv(
                    TrafficSpec("tcp"),
                    direction=background,
                    cc="bbr",
                    duration=seconds,
                    interval=1.0,
                )
                bulk = subprocess.Popen(
                    ns_cmd(topo.client, argv), stdout=subprocess.PIPE, text=True
                )
                time.sleep(LEAD)
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
            rate = None
            if bulk is not None:
                out, _ = bulk.communicate(timeout=120)
                end = json.loads(out)["end"]["sum_received"]
                rate = end["bits_per_second"] / 1e6
            return result, rate
        finally:
            if bulk is not None and bulk.poll() is None:
                bulk.kill()
                bulk.wait()
            topo.stop(server)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fetches", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--modes", default="off,tcp")
    parser.add_argument("--background", choices=("none", "down", "up"), default="none")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="braid-short-") as tmp:
        www = Path(tmp)
        for name, size in FILES.items():
            (www / name).write_bytes(os.urandom(size))
        for _ in range(args.rounds):
            for mode in args.modes.split(","):
                result, rate = run_mode(mode, www, args.fetches, args.background)
                print(
                    f"equalize {mode:>8}: "
                    + "; ".join(
                        f"{name} connect {c:.1f} ms, total {t:.1f} ms"
                        for name, (c, t) in result.items()
                    )
                    + ("" if rate is None else f"; BBR {args.background} {rate:.1f} Mbit/s"),
                    flush=True,
                )


if __name__ == "__main__":
    main()
