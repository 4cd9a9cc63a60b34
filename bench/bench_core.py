"""Microbenchmarks of braid's per-packet core path: microseconds per packet.

    python bench/bench_core.py [--packets N]

Not a test: numbers depend on the machine. Each line is the best of 3 runs.
"""

from __future__ import annotations

import argparse
import json
import random
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from braid.core.path import PathState
from braid.core.reorder import ReorderBuffer
from braid.core.scheduler import SCHEDULERS, Scheduler, get_scheduler
from braid.core.session import SessionConfig, TunnelSession
from braid.core.wire import decode_datagram, encode_data

SID = 0x12345678


def child_json(argv: Sequence[str], *, timeout: float) -> dict[str, Any]:
    """Run a benchmark's child process; its last line of output, as JSON. RuntimeError
    (with the end of its stderr) if it fails."""
    result = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])} ...: {result.stderr.strip()[-400:]}")
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def ip_packet(flow: int, size: int = 1400) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, size, 0, 0, 64, 17, 0, b"\x0a\0\0\x01", b"\x0a\0\0\x02"
    )
    return header + struct.pack("!HH", 1000 + flow, 5201) + bytes(size - 24)


def exchange(
    local: TunnelSession, remote: TunnelSession, now: float, *, rounds: int, step: float
) -> float:
    """Pass datagrams both ways and run both timers `rounds` times, `step` apart (brings a
    pair's paths up); drains the events; returns the new time."""
    for _ in range(rounds):
        now += step
        for _path, data in local.datagrams_to_send(now=now):
            remote.receive_datagram(data, now=now)
        for _path, data in remote.datagrams_to_send(now=now):
            local.receive_datagram(data, now=now)
        local.handle_timer(now=now)
        remote.handle_timer(now=now)
    for session in (local, remote):
        while session.next_event() is not None:
            pass
    return now


def best_of(runs: int, count: int, body: Callable[[], None]) -> float:
    """Best time per packet in microseconds of `runs` calls of `body` (count packets each)."""
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        body()
        best = min(best, time.perf_counter() - start)
    return best / count * 1e6


def bench_wire(count: int) -> dict[str, float]:
    payload = ip_packet(1)
    datagram = encode_data(1, SID, 5, 6, 7, 8, 9, payload)

    def encode() -> None:
        for i in range(count):
            encode_data(1, SID, i, 6, i, 8, i, payload)

    def decode() -> None:
        for _ in range(count):
            decode_datagram(datagram)

    return {
        "wire: encode DATA": best_of(3, count, encode),
        "wire: decode DATA": best_of(3, count, decode),
    }


def bench_schedulers(count: int) -> dict[str, float]:
    paths = tuple(PathState(i, rate_bps=(i + 1) * 10_000_000, now=0.0) for i in range(3))
    rng = random.Random(1)
    buckets = [rng.randrange(65536) for _ in range(count)]
    results = {}
    for name in SCHEDULERS:
        scheduler = get_scheduler(name)

        def select(scheduler: Scheduler = scheduler) -> None:
            for bucket in buckets:
                scheduler.select_path(paths, 1400, bucket, now=0.0)

        results[f"scheduler: {name} select (3 paths)"] = best_of(3, count, select)
    return results


def bench_reorder(count: int) -> dict[str, float]:
    packet = ip_packet(1)

    def in_order() -> None:
        buffer = ReorderBuffer(timeout=0.05)
        buffer.set_live_paths([0, 1])
        for i in range(count):
            buffer.push(i & 63, i >> 6, i, packet, now=0.0)
            if i & 15 == 15:
                buffer.pop_ready(now=0.0)

    # Two paths, the second 20 packets behind: every other packet is held, then released.
    order = []
    for i in range(0, count, 2):
        order.append(i)
        if i >= 40:
            order.append(i - 39)
    order += list(range(max(count - 39, 1), count, 2))

    def reordered() -> None:
        buffer = ReorderBuffer(timeout=0.05)
        buffer.set_live_paths([0, 1])
        for i in order:
            buffer.push(0, i, i, packet, now=0.0)
            buffer.on_path_progress(i & 1, i)
            if i & 15 == 15:
                buffer.pop_ready(now=0.0)

    return {
        "reorder: push+pop, in order": best_of(3, count, in_order),
        "reorder: push+pop, 2 paths 20 apart": best_of(3, count, reordered),
    }


def bench_session(count: int) -> dict[str, float]:
    packets = [ip_packet(flow) for flow in range(64)]
    config = SessionConfig(max_queued_datagrams=1 << 30)

    def new_local() -> TunnelSession:
        local = TunnelSession(config, role="local", session_id=SID, now=0.0)
        for path_id in range(3):
            local.add_path(path_id, now=0.0)
        local.datagrams_to_send(now=0.0)
        return local

    def send() -> None:
        local = new_local()
        now = 0.0
        for i in range(count):
            now += 1e-6
            local.send_packet(packets[i & 63], now=now)
            local.datagrams_to_send(now=now)

    sender = new_local()
    datagrams = []
    for i in range(count):
        sender.send_packet(packets[i & 63], now=i * 1e-6)
        datagrams += [data for _, data in sender.datagrams_to_send(now=i * 1e-6)]

    def receive() -> None:
        remote = TunnelSession(config, role="remote", session_id=SID, now=0.0)
        now = 0.0
        for data in datagrams:
            now += 1e-6
            remote.receive_datagram(data, now=now)
            remote.packets_to_deliver()
            remote.datagrams_to_send(now=now)

    return {
        "session: send_packet -> datagrams_to_send": best_of(3, count, send),
        "session: receive_datagram -> packets_to_deliver": best_of(3, count, receive),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=100_000)
    args = parser.parse_args(argv)
    print(f"python {sys.version.split()[0]}, {args.packets} packets of 1400 bytes, best of 3")
    for bench in (bench_wire, bench_schedulers, bench_reorder, bench_session):
        for name, micros in bench(args.packets).items():
            print(f"  {name:50} {micros:6.2f} us/packet  ({1 / micros:5.2f} Mpps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
