"""The lab's delay element: an AF_PACKET relay between the two emulator veths of each link.

One process in the emulator namespace serves every link of a lab. For link K it holds a raw
packet socket on ``kKa`` (the local portal's side) and one on ``kKb`` (the remote portal's
side). A frame read on ``kKa`` travels "up": it is held for the link's one-way delay (plus
jitter) and written to ``kKb``, whose egress qdisc (tbf, installed by the emulator) is the
link's bottleneck queue; "down" is the mirror image. Rate and independent random loss are
not the relay's business (tc and nftables do them); delay, jitter and their accuracy are, and
so is bursty loss (a Gilbert-Elliott chain per direction, below).

Invariants:
- Within a direction frames leave in arrival order unless that direction allows reordering:
  a frame's due time is never earlier than the previous frame's (FIFO link), so jitter or a
  lowered delay never reorders.
- One heap of (due, seq, direction, frame) serves all directions; the loop sleeps in
  ``select`` with a microsecond timeout until the earliest due time or a readable socket.
- A full queue or a failed write drops the frame silently (counted): the tunnel sees loss,
  never an error.
- Bursty loss: with ``loss`` p > 0 and ``loss_burst`` B >= 1, each direction is a two-state
  Markov chain stepped once per frame read, before the frame is scheduled: good -> bad with
  probability p / (1 - p) / B, bad -> good with probability 1 / B. Every frame in the bad
  state is dropped (counted as ``dropped_loss``). The chain spends a fraction p of the frames
  in the bad state (the long-run loss rate) and stays there B frames on average (the mean
  burst length). Draws come from the relay's seeded rng.

Control: JSON lines on stdin (``{"op": "set", "link": 1, "dir": "up", "delay": 0.01,
"jitter": 0.0, "reorder": false, "loss": 0.02, "loss_burst": 4}``; ``loss_burst`` null or
``loss`` 0 turns the relay's loss off), ``{"op": "stats"}``, ``{"op": "quit"}``); replies (one
JSON line each for ``stats``, and ``ready`` once started) on stdout. End of stdin ends the relay.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import heapq
import json
import os
import random
import select
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_IGNORE_OUTGOING = 23
SO_SNDBUFFORCE = 32
SO_RCVBUFFORCE = 33
PR_SET_TIMERSLACK = 29

BUFFER_BYTES = 16 * 1024 * 1024
MAX_FRAME = 65536
MAX_QUEUED_FRAMES = 50_000
BATCH = 64  # frames read from one socket before the loop looks at due frames again
EARLY = 20e-6  # a frame due within this is sent now (the loop's own wake-up cost)
LATE_BUCKET = 50e-6  # lateness histogram resolution
LATE_BUCKETS = 200  # the last bucket holds everything later than 10 ms


@dataclass
class Direction:
    """One direction of one link: where frames go, and how long they wait."""

    name: str
    out: socket.socket
    delay: float = 0.0
    jitter: float = 0.0
    reorder: bool = False
    loss: float = 0.0
    loss_burst: float | None = None
    p_enter: float = 0.0  # good -> bad, per frame (0.0: the relay drops nothing)
    p_leave: float = 1.0  # bad -> good, per frame
    bad: bool = False
    last_due: float = 0.0
    queued: int = 0
    frames: int = 0
    bytes: int = 0
    dropped_queue: int = 0
    dropped_write: int = 0
    dropped_loss: int = 0
    late: list[int] = field(default_factory=lambda: [0] * LATE_BUCKETS)
    late_max: float = 0.0

    def lose(self, draw: float) -> bool:
        """Step the bursty-loss chain by one frame with a uniform ``draw`` in [0, 1); True
        when the frame is lost (the chain is now in the bad state)."""
        if self.bad:
            self.bad = draw >= self.p_leave
        else:
            self.bad = draw < self.p_enter
        return self.bad

    def statistics(self) -> dict[str, Any]:
        """Counters and the lateness summary (microseconds) of this direction."""
        return {
            "frames": self.frames,
            "bytes": self.bytes,
            "queued": self.queued,
            "dropped_queue": self.dropped_queue,
            "dropped_write": self.dropped_write,
            "dropped_loss": self.dropped_loss,
            "delay": self.delay,
            "jitter": self.jitter,
            "loss": self.loss,
            "loss_burst": self.loss_burst,
            "late_p50_us": _percentile_us(self.late, 0.50),
            "late_p99_us": _percentile_us(self.late, 0.99),
            "late_max_us": round(self.late_max * 1e6, 1),
        }


def gilbert_elliott(loss: float, burst: float | None) -> tuple[float, float]:
    """The chain's (P(good -> bad), P(bad -> good)) per frame for a long-run ``loss`` rate
    in bursts of mean length ``burst`` frames; (0.0, 1.0) when there is nothing to drop.

    The stationary share of bad frames is P(gb) / (P(gb) + P(bg)) = loss with P(bg) = 1 / burst.
    """
    if burst is None or loss <= 0.0:
        return 0.0, 1.0
    if burst < 1.0 or not loss <= burst / (burst + 1.0):
        raise ValueError(
            f"loss {loss:g} in bursts of {burst:g}: needs loss_burst >= 1 and "
            f"loss <= loss_burst / (loss_burst + 1)"
        )
    leave = 1.0 / burst
    return min(1.0, loss * leave / (1.0 - loss)), leave


def _percentile_us(histogram: list[int], q: float) -> float:
    total = sum(histogram)
    if total == 0:
        return 0.0
    target = q * total
    running = 0
    for index, count in enumerate(histogram):
        running += count
        if running >= target:
            return round((index + 1) * LATE_BUCKET * 1e6, 1)
    return round(LATE_BUCKETS * LATE_BUCKET * 1e6, 1)


def open_socket(ifname: str) -> socket.socket:
    """Open a non-blocking raw packet socket bound to ``ifname`` that ignores its own sends."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((ifname, ETH_P_ALL))
    sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
    for option, fallback in (
        (SO_RCVBUFFORCE, socket.SO_RCVBUF),
        (SO_SNDBUFFORCE, socket.SO_SNDBUF),
    ):
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, BUFFER_BYTES)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, fallback, BUFFER_BYTES)
    sock.setblocking(False)
    return sock


def _tune_process() -> None:
    """Ask for precise wake-ups (1 us timer slack) and a little scheduling priority."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)
    with contextlib.suppress(OSError):
        os.nice(-10)


class Relay:
    """The relay's state: sockets, directions, the heap of frames in flight."""

    def __init__(self, links: list[tuple[int, str, str]], *, seed: int | None = None) -> None:
        self.rng = random.Random(seed)
        self.directions: dict[tuple[int, str], Direction] = {}
        self.readers: dict[int, tuple[socket.socket, Direction]] = {}
        self.heap: list[tuple[float, int, Direction, bytes]] = []
        self.seq = 0
        for link, side_a, side_b in links:
            sock_a = open_socket(side_a)
            sock_b = open_socket(side_b)
            up = Direction(f"{link}/up", sock_b)
            down = Direction(f"{link}/down", sock_a)
            self.directions[(link, "up")] = up
            self.directions[(link, "down")] = down
            self.readers[sock_a.fileno()] = (sock_a, up)
            self.readers[sock_b.fileno()] = (sock_b, down)

    def configure(self, link: int, direction: str, **settings: Any) -> None:
        """Change a direction's delay, jitter, reordering or bursty loss (for new frames)."""
        entry = self.directions[(link, direction)]
        if "delay" in settings:
            entry.delay = max(0.0, float(settings["delay"]))
        if "jitter" in settings:
            entry.jitter = max(0.0, float(settings["jitter"]))
        if "reorder" in settings:
            entry.reorder = bool(settings["reorder"])
        if "loss" in settings or "loss_burst" in settings:
            loss = float(settings.get("loss", entry.loss))
            burst = settings.get("loss_burst", entry.loss_burst)
            burst = None if burst is None else float(burst)
            entry.p_enter, entry.p_leave = gilbert_elliott(loss, burst)
            entry.loss, entry.loss_burst = loss, burst
            if not entry.p_enter:
                entry.bad = False

    def receive(
        self, sock: socket.socket, direction: Direction, buf: bytearray, now: float
    ) -> None:
        """Read up to BATCH frames from ``sock`` and schedule them on ``direction``."""
        view = memoryview(buf)
        heap = self.heap
        for _ in range(BATCH):
            try:
                size = sock.recv_into(buf)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            direction.frames += 1
            direction.bytes += size
            if direction.p_enter and direction.lose(self.rng.random()):
                direction.dropped_loss += 1
                continue
            frame = bytes(view[:size])
            delay = direction.delay
            if direction.jitter:
                delay += self.rng.uniform(-direction.jitter, direction.jitter)
                if delay < 0.0:
                    delay = 0.0
            if delay == 0.0 and direction.queued == 0:
                self._write(direction, frame)
                continue
            due = now + delay
            if not direction.reorder and due < direction.last_due:
                due = direction.last_due
            direction.last_due = due
            if direction.queued >= MAX_QUEUED_FRAMES:
                direction.dropped_queue += 1
                continue
            direction.queued += 1
            self.seq += 1
            heapq.heappush(heap, (due, self.seq, direction, frame))

    def _write(self, direction: Direction, frame: bytes) -> None:
        try:
            direction.out.send(frame)
        except OSError:
            direction.dropped_write += 1

    def send_due(self, now: float) -> None:
        """Write every frame whose due time has come, recording how late each one is."""
        heap = self.heap
        limit = now + EARLY
        while heap and heap[0][0] <= limit:
            due, _, direction, frame = heapq.heappop(heap)
            direction.queued -= 1
            late = now - due
            if late > 0.0:
                if late > direction.late_max:
                    direction.late_max = late
                bucket = int(late / LATE_BUCKET)
                direction.late[bucket if bucket < LATE_BUCKETS else LATE_BUCKETS - 1] += 1
            else:
                direction.late[0] += 1
            self._write(direction, frame)

    def statistics(self) -> dict[str, Any]:
        """Every direction's counters, keyed "K/up" and "K/down"."""
        return {entry.name: entry.statistics() for entry in self.directions.values()}

    def reset_statistics(self) -> None:
        """Zero the counters and lateness histograms."""
        for entry in self.directions.values():
            entry.frames = entry.bytes = entry.dropped_queue = entry.dropped_write = 0
            entry.dropped_loss = 0
            entry.late = [0] * LATE_BUCKETS
            entry.late_max = 0.0

    def handle_command(self, line: str) -> bool:
        """Apply one control line; return False when the relay should stop."""
        try:
            command = json.loads(line)
            op = command.get("op")
            if op == "set":
                keys = ("delay", "jitter", "reorder", "loss", "loss_burst")
                settings = {k: command[k] for k in keys if k in command}
                self.configure(int(command["link"]), str(command["dir"]), **settings)
                reply: dict[str, Any] = {"ok": True}
            elif op == "stats":
                reply = {"ok": True, "stats": self.statistics()}
            elif op == "reset":
                self.reset_statistics()
                reply = {"ok": True}
            elif op == "quit":
                return False
            else:
                reply = {"ok": False, "error": f"unknown op {op!r}"}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            reply = {"ok": False, "error": str(exc)}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
        return True

    def serve(self) -> None:
        """Run until stdin closes or a quit command arrives."""
        buf = bytearray(MAX_FRAME)
        control = sys.stdin.fileno()
        os.set_blocking(control, False)
        pending = b""
        fds: list[int] = [control, *self.readers]
        readers = self.readers
        heap = self.heap
        monotonic = time.monotonic
        while True:
            timeout = None
            if heap:
                timeout = heap[0][0] - monotonic()
                if timeout < 0.0:
                    timeout = 0.0
            ready, _, _ = select.select(fds, [], [], timeout)
            now = monotonic()
            for fd in ready:
                if fd == control:
                    chunk = os.read(control, 65536)
                    if not chunk:
                        return
                    pending += chunk
                    while b"\n" in pending:
                        line, pending = pending.split(b"\n", 1)
                        if line.strip() and not self.handle_command(line.decode()):
                            return
                    continue
                sock, direction = readers[fd]
                self.receive(sock, direction, buf, now)
            if heap:
                self.send_due(monotonic())


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m braid.lab.relay --link 1:k1a:k1b [--link ...]``."""
    parser = argparse.ArgumentParser(prog="braid-lab-relay")
    parser.add_argument("--link", action="append", default=[], help="K:IFACE_A:IFACE_B")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    links: list[tuple[int, str, str]] = []
    for spec in args.link:
        index, side_a, side_b = spec.split(":")
        links.append((int(index), side_a, side_b))
    _tune_process()
    relay = Relay(links, seed=args.seed)
    sys.stdout.write(json.dumps({"ok": True, "ready": True}) + "\n")
    sys.stdout.flush()
    with contextlib.suppress(KeyboardInterrupt):
        relay.serve()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
