"""Whole data plane: iperf3 and ping through two real ``braid up`` portals, encryption on.

    flock /tmp/braid-lab.lock .venv/bin/python bench/bench_tunnel.py [--links 1,2,4]
        [--duration 8] [--udp-rate 2gbit] [--profile DIR] [--json FILE]

Needs root. For each link count it builds the lab's five namespaces
(``braid.lab.topology.Topology``, named ``blab-bench<pid>-*`` so ``braid lab clean`` finds
leftovers) and joins each link's two emulator veths with a plain Linux bridge instead of the
lab's relay, tbf and nftables: the links are unshaped (no delay, rate or loss beyond what
the kernel does). Offloads on the WAN veths are set back ON (veth defaults, like a real
NIC's checksum offload; braid's datagrams are MTU-sized, the only super-packets are its
own UDP GSO runs, which then cross veth and bridge whole); the LAN veths keep their
defaults (on). Both portals are started by ``braid.lab.portals.Portals`` (encryption on,
each link declared at 10 Gbit/s); ``BRAID_UDP_GSO=0`` in the environment runs them without
UDP GSO/GRO (the before/after runs of docs/performance.md).

Measured per link count, all client -> server (upload) through the tunnel:
- one TCP flow (``-C cubic``; the cc that ran is reported), 4 parallel TCP flows, UDP at a
  high offered rate: receiver goodput in Mbit/s; inner packets/s leaving the tunnel (the
  remote portal's own ``tun_packets_written``) and how many of them one TUN write carried
  (against the TUN's rx counter: more than 1 with GSO writes, `braid.io.coalesce`); CPU
  seconds per Gbit of goodput of each portal (/proc/PID/stat);
- latency at light load: ping p50 through the tunnel minus ping p50 over the bare link.

With ``--profile DIR``, one more single-flow TCP run (1 link) is sampled by py-spy
(non-blocking) in both portals; the collapsed stacks and a summary land in DIR.
Everything is torn down in ``finally`` (also on Ctrl-C and SIGTERM).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from braid.lab.emulator import LinkShape
from braid.lab.netns import LabError, check_environment, cpu_seconds, ns_cmd, run
from braid.lab.portals import TUNNEL_NAME, Portals
from braid.lab.topology import Topology
from braid.lab.traffic import (
    IperfServer,
    TrafficSpec,
    iperf_client_argv,
    parse_iperf,
    ping_argv,
    summarise_ping,
)
from braid.lab.units import parse_rate

#: The rate each link declares to braid (its initial rate hint): above what veths carry here.
DECLARED_LINK_BPS = 10_000_000_000
OFFLOADS_ON = ["tx", "on", "tso", "on", "gso", "on", "gro", "on", "sg", "on"]
PING_INTERVAL = 0.05
PING_SECONDS = 3.0


@dataclass
class FlowResult:
    """One iperf3 run through the tunnel."""

    links: int
    test: str
    mbps: float
    pps: float
    cpu_s_per_gbit: dict[str, float]
    cpu_percent: dict[str, float]
    cc: str | None = None
    retransmits: int | None = None
    lost_percent: float | None = None
    offered_mbps: float | None = None
    packets_per_write: float | None = None
    machine_busy_percent: float | None = None
    """Of all cores together (/proc/stat), during the run: 100 means no idle time left."""


@dataclass
class LatencyResult:
    """Ping p50 over the bare link and through the idle tunnel, in ms."""

    links: int
    bare_p50_ms: float | None
    tunnel_p50_ms: float | None
    tunnel_p95_ms: float | None

    @property
    def added_ms(self) -> float | None:
        """Latency the tunnel adds at light load (p50 minus p50)."""
        if self.bare_p50_ms is None or self.tunnel_p50_ms is None:
            return None
        return self.tunnel_p50_ms - self.bare_p50_ms


@dataclass
class TunnelBench:
    """Everything one run of this benchmark measured."""

    duration: float
    udp_rate_bps: float
    flows: list[FlowResult] = field(default_factory=list)
    latency: list[LatencyResult] = field(default_factory=list)
    bare_tcp_mbps: float | None = None
    rss_mib: list[tuple[int, str, float, float]] = field(default_factory=list)
    """(links, role, RSS once the tunnel is up, RSS after the runs) of each portal."""
    profile: dict[str, list[tuple[str, float, float]]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Plain data (for --json and docs/performance.md)."""
        data = asdict(self)
        for entry, result in zip(data["latency"], self.latency, strict=True):
            entry["added_ms"] = result.added_ms
        return data


FLOW_COLUMNS = (
    "links",
    "test",
    "Mbit/s",
    "inner pkt/s",
    "pkt/TUN write",
    "CPU s/Gbit local",
    "CPU s/Gbit remote",
    "CPU % local",
    "CPU % remote",
    "machine busy %",
    "notes",
)
"""The columns of `flow_rows` (the printed table and docs/performance.md)."""


# -- the topology ---------------------------------------------------------------------------


def unshape(topo: Topology) -> None:
    """Bridge each link's two emulator veths (no relay, no qdisc) and turn offloads back on."""
    for link in topo.links:
        bridge = f"br{link.index}"
        run(["ip", "-n", topo.emulator, "link", "add", bridge, "type", "bridge", "stp_state", "0"])
        run(
            [
                "ip",
                "-n",
                topo.emulator,
                "link",
                "set",
                bridge,
                "type",
                "bridge",
                "forward_delay",
                "0",
            ]
        )
        for dev in (link.emu_local, link.emu_remote):
            run(["ip", "-n", topo.emulator, "link", "set", dev, "master", bridge])
        run(["ip", "-n", topo.emulator, "link", "set", bridge, "up"])
        for ns, dev in (
            (topo.local, link.local_if),
            (topo.emulator, link.emu_local),
            (topo.emulator, link.emu_remote),
            (topo.remote, link.remote_if),
        ):
            run(ns_cmd(ns, ["ethtool", "-K", dev, *OFFLOADS_ON]), check=False)


def tun_packets(ns: str, key: str) -> int:
    """The ``rx`` or ``tx`` packet counter of the tunnel device in namespace ``ns``."""
    out = run(["ip", "-n", ns, "-j", "-s", "link", "show", TUNNEL_NAME], check=False)
    try:
        return int(json.loads(out)[0]["stats64"][key]["packets"])
    except (ValueError, IndexError, KeyError):
        return 0


def rss_mib(pid: int) -> float:
    """Resident set size of process ``pid`` in MiB (nan if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def ping_p50(topo: Topology) -> tuple[float | None, float | None]:
    """Ping the server from the client at light load: (p50, p95) in ms."""
    argv = ping_argv(duration=PING_SECONDS, interval=PING_INTERVAL)
    result = subprocess.run(
        ns_cmd(topo.client, argv), capture_output=True, text=True, timeout=PING_SECONDS + 15
    )
    summary, _loss = summarise_ping(result.stdout)
    if summary is None:
        return None, None
    return summary["p50"], summary["p95"]


# -- one iperf3 run -------------------------------------------------------------------------


def machine_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of all cores together, from /proc/stat."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:9]]
    idle = fields[3] + fields[4]  # idle, iowait
    total = sum(fields)
    return total - idle, total


def portal_counter(stats: Path | None, key: str) -> int | None:
    """A counter from the newest line of a portal's statistics time series (JSON lines,
    written every 0.25 s when BRAID_LAB_STATS is set), or None."""
    if stats is None or not stats.exists():
        return None
    for line in reversed(stats.read_text().splitlines()):
        try:
            return int(json.loads(line)["counters"][key])
        except (ValueError, KeyError, TypeError):
            continue  # (a line still being written)
    return None


def iperf(
    topo: Topology,
    traffic: TrafficSpec,
    duration: float,
    watch: dict[str, int],
    remote_stats: Path | None = None,
) -> tuple[dict[str, Any], float, dict[str, float], int, int | None]:
    """Run one iperf3 client; return (report, elapsed, CPU seconds by role, TUN writes,
    inner packets written by the remote portal if its statistics are given)."""
    argv = iperf_client_argv(traffic, direction="up", cc="cubic", duration=duration, interval=1.0)
    before = {role: cpu_seconds(pid) for role, pid in watch.items()}
    rx_before = tun_packets(topo.remote, "rx")
    inner_before = portal_counter(remote_stats, "tun_packets_written")
    busy_before, total_before = machine_cpu()
    start = time.monotonic()
    result = subprocess.run(
        ns_cmd(topo.client, argv), capture_output=True, text=True, timeout=duration + 30
    )
    elapsed = time.monotonic() - start
    after = {role: cpu_seconds(pid) for role, pid in watch.items()}
    busy_after, total_after = machine_cpu()
    packets = tun_packets(topo.remote, "rx") - rx_before
    inner = None
    if inner_before is not None:
        time.sleep(0.4)  # the next statistics line
        inner_after = portal_counter(remote_stats, "tun_packets_written")
        inner = inner_after - inner_before if inner_after is not None else None
    try:
        report = json.loads(result.stdout)
    except ValueError:
        detail = (result.stderr or result.stdout).strip()[-200:] or "no output"
        raise LabError(f"iperf3 failed: {detail}") from None
    cpu = {
        role: (after[role] or 0.0) - (before[role] or 0.0)
        for role in watch
        if before[role] is not None and after[role] is not None
    }
    # (not a role: the whole machine's busy share, 0..1, popped by measure_flow)
    cpu["machine"] = (busy_after - busy_before) / max(total_after - total_before, 1)
    return report, elapsed, cpu, packets, inner


def measure_flow(
    topo: Topology,
    links: int,
    name: str,
    traffic: TrafficSpec,
    duration: float,
    pids: dict,
    remote_stats: Path | None = None,
) -> FlowResult:
    """One test through the tunnel, summarised."""
    report, elapsed, cpu, writes, inner = iperf(topo, traffic, duration, pids, remote_stats)
    busy = cpu.pop("machine")
    packets = inner if inner is not None else writes
    parsed = parse_iperf(report, direction="up", traffic=traffic)
    gbit = parsed.mbps * duration / 1000.0
    return FlowResult(
        links=links,
        test=name,
        mbps=parsed.mbps,
        pps=packets / elapsed if elapsed > 0 else 0.0,
        packets_per_write=packets / writes if inner is not None and writes > 0 else None,
        machine_busy_percent=100.0 * busy,
        cpu_s_per_gbit={role: s / gbit if gbit > 0 else float("nan") for role, s in cpu.items()},
        cpu_percent={role: 100.0 * s / elapsed for role, s in cpu.items()},
        cc=parsed.cc,
        retransmits=parsed.retransmits,
        lost_percent=parsed.lost_percent,
        offered_mbps=traffic.rate_bps / 1e6 if traffic.rate_bps else None,
    )


# -- profiling ------------------------------------------------------------------------------


def py_spy() -> str | None:
    """The py-spy executable next to this interpreter, or on PATH."""
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else shutil.which("py-spy")


def summarise_collapsed(path: Path, top: int = 15) -> list[tuple[str, float, float]]:
    """Top functions of py-spy's collapsed stacks: (function, % self, % inclusive)."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_short_frame(f) for f in stack.split(";") if f]
        if frames:
            own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return []
    return [
        (name, 100.0 * n / total, 100.0 * inclusive[name] / total)
        for name, n in own.most_common(top)
    ]


def _short_frame(frame: str) -> str:
    """``send_packet (braid/core/session.py:123)`` -> ``send_packet (core/session.py)``."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path = where.rsplit(":", 1)[0]
    for marker in ("/braid/", "/site-packages/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})" if path else name


def profile_run(
    topo: Topology,
    duration: float,
    pids: dict[str, int],
    out_dir: Path,
    remote_stats: Path | None = None,
) -> tuple[FlowResult, dict[str, list[tuple[str, float, float]]]]:
    """One TCP flow while py-spy samples both portals; the flow's result and the summaries."""
    spy = py_spy()
    if spy is None:
        raise LabError("py-spy is not installed: .venv/bin/pip install py-spy")
    out_dir.mkdir(parents=True, exist_ok=True)
    samplers = {}
    for role, pid in pids.items():
        target = out_dir / f"{role}.collapsed"
        argv = [spy, "record", "--nonblocking", "--format", "raw", "--rate", "200"]
        argv += ["--duration", f"{int(duration)}", "--pid", str(pid), "--output", str(target)]
        samplers[role] = (
            subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
            target,
        )
    try:
        flow = measure_flow(
            topo, 1, "tcp x1 (py-spy)", TrafficSpec("tcp"), duration, pids, remote_stats
        )
    finally:
        for proc, _ in samplers.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    summaries = {
        role: summarise_collapsed(target)
        for role, (_, target) in samplers.items()
        if target.exists()
    }
    return flow, summaries


# -- the benchmark --------------------------------------------------------------------------


def run_links(links: int, args: argparse.Namespace, bench: TunnelBench, progress: Any) -> None:
    """Build an unshaped lab of ``links`` links, measure, tear it down."""
    with Topology(links, tag=f"bench{os.getpid()}") as topo:
        unshape(topo)
        progress(f"{links} link(s): lab built, bare-link ping")
        topo.route_via(1)
        bare_p50, _ = ping_p50(topo)
        if links == 1 and not args.no_bare_tcp:
            with IperfServer(topo):
                report, _, _, _, _ = iperf(topo, TrafficSpec("tcp"), min(args.duration, 4.0), {})
            bench.bare_tcp_mbps = parse_iperf(
                report, direction="up", traffic=TrafficSpec("tcp")
            ).mbps
        topo.route_via(None)
        shapes = [LinkShape(DECLARED_LINK_BPS, DECLARED_LINK_BPS)] * links
        stats_dir = topo.file("stats")  # (removed with the lab)
        stats_dir.mkdir(exist_ok=True)
        remote_stats = stats_dir / "remote.jsonl"
        portals = Portals(topo, shapes, {"encryption": True}, stats_dir=stats_dir)
        with portals, IperfServer(topo):
            pids = portals.pids()
            rss_idle = {role: rss_mib(pid) for role, pid in pids.items()}
            tunnel_p50, tunnel_p95 = ping_p50(topo)
            bench.latency.append(LatencyResult(links, bare_p50, tunnel_p50, tunnel_p95))
            tests = {
                "tcp1": ("tcp x1", TrafficSpec("tcp")),
                "tcp4": ("tcp x4", TrafficSpec("tcp", streams=4)),
                "udp": ("udp", TrafficSpec("udp", rate_bps=args.udp_rate)),
            }
            for name, traffic in (tests[key] for key in args.tests):
                progress(f"{links} link(s): {name}")
                bench.flows.append(
                    measure_flow(topo, links, name, traffic, args.duration, pids, remote_stats)
                )
            if args.profile and links == 1:
                progress("1 link: tcp x1 under py-spy")
                flow, bench.profile = profile_run(
                    topo, args.duration, pids, args.profile, remote_stats
                )
                bench.flows.append(flow)
            if not portals.alive():
                raise LabError("a portal died during the benchmark")
            for role, pid in sorted(pids.items()):
                bench.rss_mib.append((links, role, rss_idle[role], rss_mib(pid)))


def run_bench(args: argparse.Namespace, progress: Any = print) -> TunnelBench:
    """Run every link count of ``args``; return the results."""
    check_environment()
    bench = TunnelBench(duration=args.duration, udp_rate_bps=args.udp_rate)
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        for links in args.links:
            run_links(links, args, bench, progress)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return bench


def print_tables(bench: TunnelBench) -> None:
    """Print the results as rich tables."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().width, 150))
    table = Table(title=f"braid tunnel, encrypted, unshaped veth links, {bench.duration:g} s runs")
    for column in FLOW_COLUMNS:
        table.add_column(column, justify="left" if column in ("test", "notes") else "right")
    for row in flow_rows(bench):
        table.add_row(*row)
    console.print(table)
    lat = Table(title="latency at light load (ping p50, ms)")
    for column in ("links", "bare link", "through tunnel", "added"):
        lat.add_column(column, justify="right")
    for row in latency_rows(bench):
        lat.add_row(*row)
    console.print(lat)
    if bench.bare_tcp_mbps is not None:
        console.print(f"bare link, no tunnel, one TCP flow: {bench.bare_tcp_mbps:.0f} Mbit/s")
    if bench.rss_mib:
        rss = Table(title="portal memory (RSS, MiB)")
        for column in ("links", "portal", "tunnel up, idle", "after the runs"):
            rss.add_column(column, justify="right")
        for row in rss_rows(bench):
            rss.add_row(*row)
        console.print(rss)


def _num(value: float | None, fmt: str = ".0f") -> str:
    return "-" if value is None or value != value else format(value, fmt)


def flow_rows(bench: TunnelBench) -> list[list[str]]:
    """The throughput table as strings."""
    rows = []
    for flow in bench.flows:
        notes = []
        if flow.cc:
            notes.append(f"cc {flow.cc}")
        if flow.retransmits is not None:
            notes.append(f"{flow.retransmits} retransmits")
        if flow.offered_mbps is not None:
            notes.append(f"offered {flow.offered_mbps:.0f} Mbit/s")
        if flow.lost_percent is not None:
            notes.append(f"{flow.lost_percent:.1f} % lost")
        rows.append(
            [
                str(flow.links),
                flow.test,
                _num(flow.mbps),
                _num(flow.pps),
                _num(flow.packets_per_write, ".1f"),
                _num(flow.cpu_s_per_gbit.get("local"), ".2f"),
                _num(flow.cpu_s_per_gbit.get("remote"), ".2f"),
                _num(flow.cpu_percent.get("local")),
                _num(flow.cpu_percent.get("remote")),
                _num(flow.machine_busy_percent),
                ", ".join(notes),
            ]
        )
    return rows


def rss_rows(bench: TunnelBench) -> list[list[str]]:
    """The portal memory table as strings."""
    return [
        [str(links), role, _num(idle, ".1f"), _num(after, ".1f")]
        for links, role, idle, after in bench.rss_mib
    ]


def latency_rows(bench: TunnelBench) -> list[list[str]]:
    """The latency table as strings."""
    return [
        [
            str(r.links),
            _num(r.bare_p50_ms, ".3f"),
            _num(r.tunnel_p50_ms, ".3f"),
            _num(r.added_ms, ".3f"),
        ]
        for r in bench.latency
    ]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (also used by bench/run.py)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    add_arguments(parser)
    return parser.parse_args(argv)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This benchmark's options, for a parser of this script or of bench/run.py."""
    parser.add_argument(
        "--links",
        type=lambda text: [int(x) for x in text.split(",")],
        default=[1, 2, 4],
        help="link counts, comma-separated (default 1,2,4)",
    )
    parser.add_argument(
        "--tests",
        type=lambda text: text.split(","),
        default=["tcp1", "tcp4", "udp"],
        help="tests to run, comma-separated, of tcp1,tcp4,udp (default all)",
    )
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per iperf3 run")
    parser.add_argument(
        "--udp-rate", type=parse_rate, default=parse_rate("2gbit"), help="UDP offered rate"
    )
    parser.add_argument("--profile", type=Path, help="also profile one TCP flow; output here")
    parser.add_argument("--no-bare-tcp", action="store_true", help="skip the bare-link TCP run")
    parser.add_argument("--json", type=Path, help="write the results as JSON here")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        bench = run_bench(args)
    except KeyboardInterrupt:
        print("interrupted; lab removed", file=sys.stderr)
        return 130
    except LabError as exc:
        print(f"bench_tunnel: {exc}", file=sys.stderr)
        return 1
    print_tables(bench)
    if args.json:
        args.json.write_text(json.dumps(bench.to_json(), indent=2) + "\n")
    if bench.profile:
        for role, rows in bench.profile.items():
            print(f"\n{role} portal, top functions by own samples (% own, % inclusive):")
            for name, own, incl in rows:
                print(f"  {own:5.1f} {incl:5.1f}  {name}")
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
