"""The multi-queue TUN experiment of issue 9: one worker per core, sharded by flow.

    flock /tmp/braid-lab.lock .venv/bin/python bench/bench_multiqueue.py [--rounds 3]
        [--duration 8] [--streams 1,2,4] [--json FILE]

Needs root and iperf3. Each "worker" is a whole ``braid up`` pair (its own keys, UDP
port and session) whose two portals attach one queue each of a multi-queue TUN
(IFF_MULTI_QUEUE, ``BRAID_TUN_MULTIQUEUE=1``) on their side: the kernel hands each
inner flow to one queue by its hash, so the flows of one site are spread over the
workers, and each worker is one process with its own core to use. Compared with the
shipped shape, one pair on a single-queue TUN, in the unshaped one-link lab of
``bench_tunnel.py`` (encryption on), rounds interleaved (1 worker, 2 workers, 1, 2, ...).
Per run: goodput of 1, 2 and 4 TCP flows (``-C cubic``), CPU seconds per Gbit of all
local and of all remote workers together, each worker's CPU % and the machine's busy %.
Everything is torn down in ``finally``. The results are in docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench_tunnel import DECLARED_LINK_BPS, iperf, unshape

from braid.io.tun import MULTIQUEUE_ENV
from braid.lab.emulator import LinkShape
from braid.lab.netns import check_environment, run
from braid.lab.portals import PORT, TUNNEL_NAME, Portals
from braid.lab.topology import Topology
from braid.lab.traffic import IperfServer, TrafficSpec, parse_iperf


def one_setting(
    workers: int, streams: list[int], duration: float, tag: str
) -> list[dict[str, Any]]:
    """Build the lab, start `workers` portal pairs, run iperf3 per stream count."""
    if workers > 1:
        os.environ[MULTIQUEUE_ENV] = "1"
    else:
        os.environ.pop(MULTIQUEUE_ENV, None)
    rows: list[dict[str, Any]] = []
    with Topology(1, tag=tag) as topo, ExitStack() as stack:
        unshape(topo)
        shapes = [LinkShape(DECLARED_LINK_BPS, DECLARED_LINK_BPS)]
        pids: dict[str, int] = {}
        for index in range(workers):
            pair = Portals(topo, shapes, {"encryption": True}, port=PORT + index, label=f"-{index}")
            stack.enter_context(pair)
            pids |= {f"{role}{index}": pid for role, pid in pair.pids().items()}
        detail = run(["ip", "-n", topo.local, "-d", "-j", "link", "show", TUNNEL_NAME])
        queues = json.loads(detail)[0]["linkinfo"]["info_data"].get("numqueues", 1)
        if queues != workers:
            raise SystemExit(f"the local TUN has {queues} queue(s), expected {workers}")
        with IperfServer(topo):
            for count in streams:
                traffic = TrafficSpec("tcp", streams=count)
                report, elapsed, cpu, _, _ = iperf(topo, traffic, duration, pids)
                busy = cpu.pop("machine")
                parsed = parse_iperf(report, direction="up", traffic=traffic)
                gbit = parsed.mbps * duration / 1000.0
                rows.append(
                    {
                        "workers": workers,
                        "streams": count,
                        "mbps": parsed.mbps,
                        "cc": parsed.cc,
                        "machine_busy_percent": 100.0 * busy,
                        "local_s_per_gbit": sum(v for k, v in cpu.items() if k[0] == "l") / gbit,
                        "remote_s_per_gbit": sum(v for k, v in cpu.items() if k[0] == "r") / gbit,
                        "cpu_percent": {k: 100.0 * v / elapsed for k, v in sorted(cpu.items())},
                    }
                )
                shown = {k: round(v, 2) if isinstance(v, float) else v for k, v in rows[-1].items()}
                shown["cpu_percent"] = {k: round(v) for k, v in shown["cpu_percent"].items()}
                print(json.dumps(shown), flush=True)
    return rows


def summary(rows: list[dict[str, Any]]) -> list[str]:
    """A Markdown table: per setting, the runs' Mbit/s and the medians."""
    lines = [
        "| workers | TCP flows | Mbit/s (runs) | median | local CPU s/Gbit | remote CPU s/Gbit"
        " | machine busy % |",
        "| ---: | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for streams in sorted({r["streams"] for r in rows}):
        for workers in sorted({r["workers"] for r in rows}):
            runs = [r for r in rows if r["workers"] == workers and r["streams"] == streams]
            if not runs:
                continue

            def med(key: str, runs: list[dict[str, Any]] = runs) -> float:
                return float(statistics.median(r[key] for r in runs))

            mbps = ", ".join(f"{r['mbps']:.0f}" for r in runs)
            lines.append(
                f"| {workers} | {streams} | {mbps}"
                f" | {med('mbps'):.0f} | {med('local_s_per_gbit'):.2f}"
                f" | {med('remote_s_per_gbit'):.2f} | {med('machine_busy_percent'):.0f} |"
            )
    return lines


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--workers", default="1,2", help="worker counts to compare")
    parser.add_argument("--streams", default="1,2,4", help="TCP flow counts")
    parser.add_argument("--json", type=Path, help="write every run here")
    args = parser.parse_args(argv)
    try:
        workers = [int(w) for w in args.workers.split(",")]
        streams = [int(s) for s in args.streams.split(",")]
    except ValueError:
        parser.error("--workers and --streams take comma-separated whole numbers, e.g. 1,2,4")
    if min(workers + streams) < 1 or args.rounds < 1 or args.duration <= 0:
        parser.error("--workers, --streams and --rounds must be at least 1, --duration > 0")
    check_environment()
    signal.signal(signal.SIGTERM, _interrupt)  # tear the lab down on SIGTERM too
    rows: list[dict[str, Any]] = []
    for index in range(args.rounds):
        for count in workers:
            rows += one_setting(count, streams, args.duration, f"mq{os.getpid()}{index}{count}")
    print("\n".join(summary(rows)))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
