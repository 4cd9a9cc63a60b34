"""An upload, then a download, through the same portals (issue 5).

    flock /tmp/braid-lab.lock .venv/bin/python bench/bench_updown.py [SCENARIO]
        [--up 15] [--down 10] [--cc cubic] [--rounds 1]

Needs root and iperf3. The scenario's links (default: agg-four-down-bbr, four links of
10/20/30/40 Mbit/s with 5/10/20/40 ms) and [braid] settings; each round starts both
portals, runs one CUBIC flow up for `--up` seconds, then one flow down (`--cc`) for
`--down` seconds, and prints each flow's throughput and its 0.5 s samples. While the
upload runs, the download direction's paths carry its acknowledgements only: the
download shows what the paths' estimates are worth after that (docs/design-notes.md,
"A path that carries only acknowledgements"). Everything is torn down on exit.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from braid.lab.experiment import SETTLE, Lab
from braid.lab.portals import Portals
from braid.lab.scenario import load_scenario
from braid.lab.traffic import IperfServer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("scenario", nargs="?", default="agg-four-down-bbr")
    parser.add_argument("--up", type=float, default=15.0, help="seconds of upload")
    parser.add_argument("--down", type=float, default=10.0, help="seconds of download")
    parser.add_argument("--cc", default="cubic", choices=("cubic", "bbr"))
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    scenario = load_scenario(args.scenario)
    flows = (
        dataclasses.replace(scenario, direction="up", cc="cubic", duration=args.up, interval=0.5),
        dataclasses.replace(
            scenario, direction="down", cc=args.cc, duration=args.down, interval=0.5
        ),
    )
    with Lab(len(scenario.links), mptcp=False) as lab:
        emulator = lab._emulator(scenario)
        lab.topology.route_via(None)
        for _ in range(args.rounds):
            emulator.reset(scenario.shapes())
            portals = Portals(
                lab.topology,
                scenario.shapes(),
                scenario.braid,
                classes=scenario.classes,
                rate_hints=scenario.rate_hints,
            )
            portals.start()
            try:
                with IperfServer(lab.topology, mptcp=False, interval=0.5):
                    time.sleep(SETTLE)
                    portals.wait_tunnel(10.0)
                    for flow in flows:
                        run = lab._one_run(flow, emulator, mptcp=False, watch={})
                        samples = " ".join(f"{value:.0f}" for _, value in run.samples)
                        print(
                            f"{flow.direction} {flow.cc}: {run.mbps:.1f} Mbit/s; 0.5 s: {samples}",
                            flush=True,
                        )
            finally:
                portals.stop()


if __name__ == "__main__":
    main()
