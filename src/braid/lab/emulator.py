"""Link emulation: rate (tbf), loss and cuts (nftables), delay, jitter, bursty loss (the relay).

For link K, frames going up (local portal -> remote portal) enter the emulator on ``kKa``,
wait in the relay for the one-way delay, then leave by ``kKb``. The egress of ``kKb`` holds,
in this order, the nftables ``netdev`` egress chain ``up_K`` (random loss, cuts) and the tbf
qdisc (the link's rate and its bottleneck queue). Going down is the mirror image on ``kKa``.
So a frame is delayed, then may be lost, then queues at the bottleneck: the queue is after
the delay, as at the far end of a real access link, and it fills like one. Bursty loss
(``loss_burst`` set) is dropped by the relay instead, as frames arrive (see relay.py): then
the nftables chain holds no loss rule, only cuts.

Invariants:
- A cut drops every frame of the link in both directions silently (no ICMP, no carrier
  change): the tunnel sees silence. Restore returns the link to its current shape.
- ``set_link`` changes only what it is given; the tbf queue survives rate changes.
- One relay process serves all links; if it dies the lab fails loudly.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, replace
from typing import Any

from braid.lab.netns import LabError, ns_cmd, python_cmd, run
from braid.lab.topology import Topology

FRAME_BYTES = 1514  # an MTU-sized Ethernet frame, for queue limits given in packets
NFT_TABLE = "braidlab"


@dataclass(frozen=True)
class LinkShape:
    """What one emulated link does to traffic. Rates in bit/s, times in seconds.

    ``loss`` is the long-run loss fraction of each direction: independent per frame when
    ``loss_burst`` is None, else in bursts of ``loss_burst`` frames on average (a
    Gilbert-Elliott chain in the relay, which needs loss <= loss_burst / (loss_burst + 1)).
    """

    rate_up_bps: float
    rate_down_bps: float
    delay: float = 0.0
    jitter: float = 0.0
    loss: float = 0.0
    queue: float = 0.05
    queue_packets: int | None = None
    reorder: bool = False
    loss_burst: float | None = None
    mtu: int | None = None
    """The link's MTU inside the emulator (None: the veths' 1500): larger frames vanish
    without an ICMP error, a path MTU black hole (issue 7)."""

    def check(self) -> None:
        """Raise ValueError (one line) if the loss settings cannot be emulated."""
        if not 0.0 <= self.loss <= 1.0:
            raise ValueError(f"loss must be from 0 to 1, got {self.loss:g}")
        if self.loss_burst is None:
            return
        if self.loss_burst < 1.0:
            raise ValueError(
                f"loss_burst is a mean burst length >= 1 frame, got {self.loss_burst:g}"
            )
        if self.loss > self.loss_burst / (self.loss_burst + 1.0):
            limit = self.loss_burst / (self.loss_burst + 1.0)
            raise ValueError(
                f"loss {self.loss * 100:g}% cannot come in bursts of {self.loss_burst:g} frames "
                f"(at most {limit * 100:.3g}% with that burst length)"
            )

    @property
    def relay_loss(self) -> float:
        """The loss the relay drops (bursty loss); independent loss is nftables' job."""
        return self.loss if self.loss_burst is not None else 0.0

    @property
    def random_loss(self) -> float:
        """The independent loss nftables drops (0.0 when the loss is bursty)."""
        return 0.0 if self.loss_burst is not None else self.loss

    def queue_limit_bytes(self, rate_bps: float) -> int:
        """The tbf queue limit: ``queue_packets`` frames, or ``queue`` seconds at the rate."""
        if self.queue_packets is not None:
            limit = self.queue_packets * FRAME_BYTES
        else:
            limit = int(rate_bps / 8 * self.queue)
        return max(limit, 4 * FRAME_BYTES)


def _check(index: int, shape: LinkShape) -> None:
    try:
        shape.check()
    except ValueError as exc:
        raise LabError(f"link {index}: {exc}") from None


def tbf_burst_bytes(rate_bps: float) -> int:
    """A token bucket of about 1 ms at the rate, at least two frames: smooth, accurate."""
    return max(2 * FRAME_BYTES + 200, int(rate_bps / 8 * 0.001))


class Emulator:
    """Shapes every link of a topology and runs the relay; change links at run time."""

    def __init__(self, topology: Topology, shapes: list[LinkShape], *, seed: int | None = None):
        if len(shapes) != len(topology.links):
            raise LabError(f"{len(shapes)} link shapes for {len(topology.links)} links")
        for index, shape in enumerate(shapes, start=1):
            _check(index, shape)
        self.topology = topology
        self.shapes = list(shapes)
        self.cut_links: set[int] = set()
        self.seed = seed
        self._relay: subprocess.Popen[str] | None = None

    def __enter__(self) -> Emulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start the relay, create the nftables chains, apply every link's shape."""
        topo = self.topology
        argv = python_cmd("braid.lab.relay")
        for link in topo.links:
            argv += ["--link", f"{link.index}:{link.emu_local}:{link.emu_remote}"]
        if self.seed is not None:
            argv += ["--seed", str(self.seed)]
        with open(topo.file("relay.log"), "w") as log:
            self._relay = topo.spawn(topo.emulator, argv, stdin=subprocess.PIPE, stderr=log)
        self._reply()  # "ready"
        chains = []
        for link in topo.links:
            for chain, dev in (
                (f"up_{link.index}", link.emu_remote),
                (f"down_{link.index}", link.emu_local),
            ):
                chains.append(
                    f"add chain netdev {NFT_TABLE} {chain} "
                    f'{{ type filter hook egress device "{dev}" priority 0; policy accept; }}'
                )
        script = f"add table netdev {NFT_TABLE}\n" + "\n".join(chains) + "\n"
        run(ns_cmd(topo.emulator, ["nft", "-f", "-"]), input=script)
        for index in range(1, len(self.shapes) + 1):
            self._apply(index, self.shapes[index - 1], first=True)

    def stop(self) -> None:
        """Stop the relay (the namespaces go with the topology)."""
        if self._relay is not None:
            self.topology.stop(self._relay, grace=1.0)
            self._relay = None

    # -- changes ----------------------------------------------------------------------------

    def set_link(self, index: int, **changes: Any) -> LinkShape:
        """Change some of link ``index``'s settings (LinkShape field names); return the shape."""
        shape = replace(self.shapes[index - 1], **changes)
        _check(index, shape)
        self._apply(index, shape, old=self.shapes[index - 1])
        self.shapes[index - 1] = shape
        return shape

    def reset(self, shapes: list[LinkShape]) -> None:
        """Put every link back to ``shapes`` and undo cuts (between runs of a series)."""
        self.cut_links.clear()
        for index, shape in enumerate(shapes, start=1):
            _check(index, shape)
        for index, shape in enumerate(shapes, start=1):
            self._apply(index, shape, old=None)
            self.shapes[index - 1] = shape

    def cut(self, index: int) -> None:
        """Drop every frame of link ``index`` in both directions until ``restore``."""
        self.cut_links.add(index)
        self._nft_rules(index, self.shapes[index - 1])

    def restore(self, index: int) -> None:
        """End a cut: the link carries traffic again with its current shape."""
        self.cut_links.discard(index)
        self._nft_rules(index, self.shapes[index - 1])

    @property
    def relay_pid(self) -> int | None:
        """The relay process's pid (for CPU accounting), None when stopped."""
        return None if self._relay is None else self._relay.pid

    def statistics(self) -> dict[str, Any]:
        """The relay's per-direction counters and delay accuracy (see relay.py)."""
        self._send({"op": "stats"})
        reply = self._reply()
        stats: dict[str, Any] = reply["stats"]
        return stats

    def reset_statistics(self) -> None:
        """Zero the relay's counters."""
        self._send({"op": "reset"})
        self._reply()

    def lateness_ms(self, *, min_frames: int = 100) -> float | None:
        """How late the relay sent frames since `reset_statistics`: the largest 99th
        percentile (ms) over the directions that carried `min_frames` or more; None with
        no relay or no such direction. A busy or starved host makes it grow: past a
        millisecond or two the links did not have the delays they were given."""
        if self._relay is None or self._relay.poll() is not None:
            return None
        late = [
            float(d["late_p99_us"]) / 1000.0
            for d in self.statistics().values()
            if int(d.get("frames", 0)) >= min_frames
        ]
        return max(late) if late else None

    # -- internals --------------------------------------------------------------------------

    def _apply(
        self, index: int, shape: LinkShape, *, old: LinkShape | None = None, first: bool = False
    ) -> None:
        link = self.topology.links[index - 1]
        for dev, rate in (
            (link.emu_remote, shape.rate_up_bps),
            (link.emu_local, shape.rate_down_bps),
        ):
            if old is not None and (
                (rate, shape.queue, shape.queue_packets)
                == (
                    old.rate_up_bps if dev == link.emu_remote else old.rate_down_bps,
                    old.queue,
                    old.queue_packets,
                )
            ):
                continue
            verb = "add" if first else "replace"
            run(
                [
                    "tc",
                    "-n",
                    self.topology.emulator,
                    "qdisc",
                    verb,
                    "dev",
                    dev,
                    "root",
                    "tbf",
                    "rate",
                    f"{int(rate)}bit",
                    "burst",
                    str(tbf_burst_bytes(rate)),
                    "limit",
                    str(shape.queue_limit_bytes(rate)),
                ]
            )

        def relayed(s: LinkShape) -> tuple[object, ...]:
            return (s.delay, s.jitter, s.reorder, s.relay_loss, s.loss_burst)

        if old is None or relayed(shape) != relayed(old):
            for direction in ("up", "down"):
                self._send(
                    {
                        "op": "set",
                        "link": index,
                        "dir": direction,
                        "delay": shape.delay,
                        "jitter": shape.jitter,
                        "reorder": shape.reorder,
                        "loss": shape.relay_loss,
                        "loss_burst": shape.loss_burst,
                    }
                )
                self._reply()
        if old is None or shape.random_loss != old.random_loss:
            self._nft_rules(index, shape)
        if (old is None and shape.mtu is not None) or (old is not None and shape.mtu != old.mtu):
            for dev in (link.emu_local, link.emu_remote):
                run(
                    ns_cmd(
                        self.topology.emulator,
                        ["ip", "link", "set", "dev", dev, "mtu", str(shape.mtu or 1500)],
                    )
                )

    def _nft_rules(self, index: int, shape: LinkShape) -> None:
        lines = []
        for chain in (f"up_{index}", f"down_{index}"):
            lines.append(f"flush chain netdev {NFT_TABLE} {chain}")
            if index in self.cut_links:
                lines.append(f"add rule netdev {NFT_TABLE} {chain} counter drop")
            elif shape.random_loss > 0.0:
                threshold = round(shape.random_loss * 1_000_000)
                lines.append(
                    f"add rule netdev {NFT_TABLE} {chain} numgen random mod 1000000 < {threshold} counter drop"
                )
        run(ns_cmd(self.topology.emulator, ["nft", "-f", "-"]), input="\n".join(lines) + "\n")

    def _send(self, command: dict[str, Any]) -> None:
        relay = self._relay
        if relay is None or relay.stdin is None or relay.poll() is not None:
            raise LabError(
                f"the link emulator's relay is not running (see {self.topology.file('relay.log')})"
            )
        relay.stdin.write(json.dumps(command) + "\n")
        relay.stdin.flush()

    def _reply(self) -> dict[str, Any]:
        relay = self._relay
        assert relay is not None and relay.stdout is not None
        line = relay.stdout.readline()
        if not line:
            log = self.topology.file("relay.log")
            detail = log.read_text().strip().splitlines() if log.exists() else []
            reason = detail[-1] if detail else "no output"
            raise LabError(f"the link emulator's relay stopped: {reason}")
        reply: dict[str, Any] = json.loads(line)
        if not reply.get("ok"):
            raise LabError(f"the link emulator's relay refused a command: {reply.get('error')}")
        return reply
