"""Test traffic: iperf3 (TCP, parallel TCP, UDP at a rate and datagram size; up or down)
and ping under load.

Samples are taken at the receiver: the server's per-interval report when traffic goes up
(client -> server), the client's when it goes down (``-R``). Goodput is the receiver's total;
for UDP so are the lost and total datagram counts (iperf3's ``end.sum_received``).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from braid.lab.netns import LabError, ns_cmd, python_cmd, run
from braid.lab.topology import SERVER_IP, Topology
from braid.lab.units import format_rate, parse_rate

IPERF_PORT = 5201
UDP_PAYLOAD = 1372  # bytes: + 28 of UDP/IPv4 headers = 1400, the tunnel MTU: never fragmented
UDP_MIN_PAYLOAD = 16  # iperf3's own header in each datagram (sequence number, timestamp)


@dataclass(frozen=True)
class TrafficSpec:
    """What to send: "tcp", "tcp:4" (4 parallel flows), "udp:30mbit" (1372-byte datagrams)
    or "udp:80kbit:200" (200-byte datagrams: 50 a second, voice-like)."""

    kind: str
    streams: int = 1
    rate_bps: float | None = None
    length: int | None = None  # UDP payload bytes (iperf3 -l); None: UDP_PAYLOAD

    @property
    def payload(self) -> int:
        """UDP datagram payload bytes."""
        return self.length if self.length is not None else UDP_PAYLOAD

    @classmethod
    def parse(cls, text: str) -> TrafficSpec:
        """Parse "tcp", "tcp:N", "udp:RATE" or "udp:RATE:LEN"; ValueError says what is expected."""
        kind, _, arg = text.strip().lower().partition(":")
        if kind == "tcp":
            if not arg:
                return cls("tcp")
            if arg.isdigit() and 1 <= int(arg) <= 128:
                return cls("tcp", streams=int(arg))
            raise ValueError(
                f'expected "tcp" or "tcp:N" with N parallel flows (1-128), got {text!r}'
            )
        if kind == "udp":
            rate, colon, length = arg.partition(":")
            if not rate:
                raise ValueError(f'expected "udp:RATE" such as "udp:30mbit", got {text!r}')
            if not colon:
                return cls("udp", rate_bps=parse_rate(rate))
            if not (length.isdigit() and UDP_MIN_PAYLOAD <= int(length) <= UDP_PAYLOAD):
                raise ValueError(
                    f'expected "udp:RATE:LEN" with LEN the datagram payload in bytes '
                    f"({UDP_MIN_PAYLOAD}-{UDP_PAYLOAD}), got {text!r}"
                )
            return cls("udp", rate_bps=parse_rate(rate), length=int(length))
        raise ValueError(f'expected "tcp", "tcp:4", "udp:30mbit" or "udp:80kbit:200", got {text!r}')

    def __str__(self) -> str:
        if self.kind == "udp" and self.rate_bps is not None:
            text = f"udp:{format_rate(self.rate_bps)}"
            return text if self.length is None else f"{text}:{self.length}"
        return "tcp" if self.streams == 1 else f"tcp:{self.streams}"

    def iperf_args(self) -> list[str]:
        """The iperf3 client options for this traffic."""
        args = ["-P", str(self.streams)] if self.streams > 1 else []
        if self.kind == "udp":
            args += ["-u", "-b", f"{int(self.rate_bps or 0)}", "-l", str(self.payload)]
        return args


@dataclass
class RunResult:
    """One run of one series: goodput, samples over time, retransmits (TCP) or the
    receiver's datagram loss (UDP), latency under load."""

    mbps: float
    samples: list[tuple[float, float]]
    retransmits: int | None = None
    ping_ms: dict[str, float] | None = None
    ping_loss: float | None = None
    cc: str | None = None
    lost_percent: float | None = None  # UDP: iperf3's receiver-side lost percent
    lost_packets: int | None = None  # UDP: datagrams the receiver never got ...
    packets: int | None = None  # ... of this many (the receiver's count, lost included)
    cpu_percent: dict[str, float] = field(default_factory=dict)  # of one core, by process
    both: tuple[float, float] | None = None  # direction "both": (up, down) Mbit/s
    host: dict[str, float] = field(default_factory=dict)
    """How faithful the lab was during the run (`braid.lab.experiment`): the machine's
    CPU use and steal in percent of all its CPUs, and the emulator's lateness (its 99th
    percentile over the directions that carried traffic, in ms)."""

    def to_json(self) -> dict[str, Any]:
        """The run in the --json schema of issue 3 (UDP runs add their datagram loss)."""
        data: dict[str, Any] = {
            "mbps": round(self.mbps, 3),
            "samples": [[round(t, 3), round(v, 3)] for t, v in self.samples],
            "retransmits": self.retransmits,
            "ping_ms": self.ping_ms,
        }
        if self.both is not None:
            data["up_mbps"], data["down_mbps"] = (round(v, 3) for v in self.both)
        if self.host:
            data["host"] = {k: round(v, 3) for k, v in self.host.items()}
        if self.lost_percent is not None:
            data["lost_percent"] = round(self.lost_percent, 4)
            data["lost_packets"] = self.lost_packets
            data["packets"] = self.packets
        return data


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of ``values`` by linear interpolation."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = q * (len(ordered) - 1)
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


class IperfNoStart(LabError):
    """iperf3 gave up before any data arrived (it could not connect, the server was busy
    with an earlier test, ...): the tool failed, nothing was measured."""


class IperfServer:
    """An iperf3 server in the server namespace (MPTCP-enabled with ``mptcpize`` if asked)."""

    def __init__(
        self,
        topology: Topology,
        *,
        mptcp: bool = False,
        interval: float = 1.0,
        port: int = IPERF_PORT,
    ) -> None:
        self.topology = topology
        self.interval = interval
        self.port = port
        self.mptcp = mptcp
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> IperfServer:
        argv = ["iperf3", "-s", "-J", "-p", str(self.port), "-i", f"{self.interval:g}"]
        if self.mptcp:
            argv = ["mptcpize", "run", *argv]
        topo = self.topology
        log = topo.file(f"iperf3-server-{self.port}.log")
        with open(log, "w") as out:
            self._proc = topo.spawn(topo.server, argv, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 5.0
        probe = ns_cmd(topo.server, ["ss", "-Hltn", f"sport = :{self.port}"])
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise LabError(f"iperf3 server exited: {log.read_text().strip()[-200:]}")
            if run(probe, check=False).strip():
                return self
            time.sleep(0.05)
        raise LabError("iperf3 server did not start listening within 5 s")

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self.topology.stop(self._proc, grace=1.0)
            self._proc = None

    def restart(self) -> None:
        """Stop the server and start a fresh one on the same port.

        After a client hung or failed, a new server makes sure no half-open test of the
        old one answers the next client "the server is busy"."""
        self.__exit__()
        self.__enter__()


def iperf_client_argv(
    traffic: TrafficSpec,
    *,
    direction: str,
    cc: str,
    duration: float,
    interval: float,
    mptcp: bool = False,
    port: int = IPERF_PORT,
) -> list[str]:
    """The iperf3 client command line for one run."""
    argv = ["iperf3", "-c", SERVER_IP, "-p", str(port), "-J", "--get-server-output"]
    argv += ["-t", f"{duration:g}", "-i", f"{interval:g}", "--connect-timeout", "3000"]
    if traffic.kind == "tcp":
        argv += ["-C", cc]
    if direction == "down":
        argv.append("-R")
    elif direction == "both":
        argv.append("--bidir")
    argv += traffic.iperf_args()
    if mptcp:
        argv = ["mptcpize", "run", *argv]
    return argv


def _full_interval(entry: dict[str, Any], interval: float) -> bool:
    """False for the short tail interval iperf3 reports after the last full one."""
    return float(entry.get("seconds", interval)) >= 0.5 * interval


def parse_iperf(
    report: dict[str, Any], *, direction: str, traffic: TrafficSpec, interval: float = 1.0
) -> RunResult:
    """Goodput, receiver-side samples, retransmits and congestion control of an iperf3 run."""
    if "error" in report:
        # iperf3 writes an "end", empty or all zeros, even when the test never ran (e.g.
        # "unable to connect to server", "the server is busy running a test"): a report
        # with an error is never a measurement.
        end = report.get("end") or {}
        received = end.get("sum_received") or end.get("sum") or {}
        if not received.get("bytes"):
            raise IperfNoStart(f"iperf3: {report['error']}")
        raise LabError(f"iperf3: {report['error']}")
    if direction == "both":
        return _parse_bidir(report, traffic=traffic, interval=interval)
    end = report.get("end", {})
    received = end.get("sum_received") or end.get("sum") or {}
    mbps = float(received.get("bits_per_second", 0.0)) / 1e6
    if direction == "up":
        server = report.get("server_output_json") or {}
        intervals = server.get("intervals") or report.get("intervals", [])
    else:
        intervals = report.get("intervals", [])
    samples = _samples(intervals, "sum", interval)
    retransmits: int | None = None
    cc: str | None = None
    lost: float | None = None
    lost_packets: int | None = None
    packets: int | None = None
    if traffic.kind == "tcp":
        value = end.get("sum_sent", {}).get("retransmits")
        retransmits = int(value) if isinstance(value, int | float) and value >= 0 else None
        cc = end.get("sender_tcp_congestion")
    else:
        lost_packets = _count(received.get("lost_packets"))
        packets = _count(received.get("packets"))
        value = received.get("lost_percent")
        if isinstance(value, int | float) and not isinstance(value, bool):
            lost = float(value)
        elif lost_packets is not None and packets:
            lost = 100.0 * lost_packets / packets
    return RunResult(
        mbps=mbps,
        samples=samples,
        retransmits=retransmits,
        cc=cc,
        lost_percent=lost,
        lost_packets=lost_packets,
        packets=packets,
    )


def _samples(
    intervals: list[dict[str, Any]], key: str, interval: float
) -> list[tuple[float, float]]:
    """(end, Mbit/s) of each full, not omitted interval's `key` sum ("sum", or
    "sum_bidir_reverse" for the other direction of a --bidir run)."""
    return [
        (float(i[key]["end"]), float(i[key]["bits_per_second"]) / 1e6)
        for i in intervals
        if i.get(key) and not i[key].get("omitted") and _full_interval(i[key], interval)
    ]


def _parse_bidir(report: dict[str, Any], *, traffic: TrafficSpec, interval: float) -> RunResult:
    """An iperf3 --bidir run (direction "both"): client -> server and server -> client
    at once. Goodput and samples are the two directions' sums, each as its receiver saw
    it (the server's intervals for the upload, the client's reverse ones for the
    download); `both` keeps them apart; retransmits are both senders'."""
    end = report.get("end", {})
    server = report.get("server_output_json") or {}
    up = float((end.get("sum_received") or {}).get("bits_per_second", 0.0)) / 1e6
    down = float((end.get("sum_received_bidir_reverse") or {}).get("bits_per_second", 0.0)) / 1e6
    up_samples = _samples(server.get("intervals", []), "sum", interval)
    down_samples = _samples(report.get("intervals", []), "sum_bidir_reverse", interval)
    # (paired by the end of their interval: the server must report as often as the client)
    ups = {round(t / interval): u for t, u in up_samples}
    samples = [(t, ups[k] + d) for t, d in down_samples if (k := round(t / interval)) in ups]
    retransmits: int | None = None
    cc: str | None = None
    if traffic.kind == "tcp":
        counts = [
            _count((end.get("sum_sent") or {}).get("retransmits")),
            _count(
                ((server.get("end") or {}).get("sum_sent_bidir_reverse") or {}).get("retransmits")
            ),
        ]
        retransmits = None if None in counts else sum(c or 0 for c in counts)
        cc = end.get("sender_tcp_congestion")
    return RunResult(
        mbps=up + down, samples=samples, retransmits=retransmits, cc=cc, both=(up, down)
    )


def _count(value: Any) -> int | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return int(value)
    return None


def http_server_argv(directory: str, port: int, *, bind: str = SERVER_IP) -> list[str]:
    """The command of a static HTTP server (Python's ``http.server``) that serves
    ``directory`` on ``bind:port`` (run in the server namespace)."""
    return [
        sys.executable,
        "-m",
        "http.server",
        str(port),
        "--bind",
        bind,
        "--directory",
        directory,
    ]


@dataclass(frozen=True, slots=True)
class Fetch:
    """One HTTP fetch by curl: seconds to connect and in all, and the bytes it got."""

    connect: float
    total: float
    size: int


def curl_fetch(namespace: str, url: str, *, timeout: float = 30.0) -> Fetch:
    """Fetch `url` once with curl from `namespace` (the body discarded); raises
    `subprocess.CalledProcessError` if curl fails (HTTP errors included)."""
    argv = ["curl", "--silent", "--show-error", "--fail", "--max-time", f"{timeout:g}"]
    argv += ["-o", "/dev/null", "-w", "%{time_connect} %{time_total} %{size_download}", url]
    out = subprocess.run(
        ns_cmd(namespace, argv),
        capture_output=True,
        text=True,
        timeout=timeout + 10,
        check=True,
    ).stdout.split()
    return Fetch(connect=float(out[0]), total=float(out[1]), size=int(out[2]))


def ping_argv(*, duration: float, interval: float = 0.1, dest: str = SERVER_IP) -> list[str]:
    """The command that pings ``dest`` for ``duration`` (run in the client namespace)."""
    return python_cmd(
        "braid.lab.ping", dest, "--interval", f"{interval:g}", "--duration", f"{duration:g}"
    )


def summarise_ping(output: str) -> tuple[dict[str, float] | None, float | None]:
    """p50/p95 in ms and the loss fraction from the prober's JSON line."""
    try:
        data = json.loads(output.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None, None
    rtts = [float(x) for x in data.get("rtt_ms", [])]
    sent = int(data.get("sent", 0))
    loss = 1.0 - len(rtts) / sent if sent else None
    if not rtts:
        return None, loss
    return {
        "p50": round(percentile(rtts, 0.50), 3),
        "p95": round(percentile(rtts, 0.95), 3),
    }, loss


def median(values: list[float]) -> float:
    """The median of ``values`` (0.0 when empty)."""
    return float(statistics.median(values)) if values else 0.0
