# Earliest arrival: each packet goes to the path where it would reach the egress first.
#
# Expected arrival on a path = time until its pacer is free + (bytes queued here + this
# packet) / estimated rate + the backlog standing at the link's bottleneck + the one-way
# propagation delay.
# - The estimated rate is the controller's `btl_bw` (bottleneck bandwidth); bytes queued
#   on a path whose MTU makes full-size packets travel in fragments count for more
#   (`wire_factor`: the extra FRAG headers and link overhead).
# - The bottleneck backlog is read from the bytes in flight, at once (no waiting for RTT
#   samples): `inflight / btl_bw - (min_rtt + FEEDBACK_ALLOWANCE)`, floored at 0. Data
#   beyond one bandwidth-delay product sits in the link's queue. The allowance covers the
#   feedback hold (min_rtt excludes it); an error in it shifts every path by the same time
#   and so does not change their order.
# - The one-way delay is min RTT / 2 (`path_delay`; smoothed RTT / 2 before a windowed
#   minimum exists, 0 before any sample). Using the smoothed RTT here made a busy path
#   look slow a round trip too late, and the traffic flapped between paths.
# Packets therefore fill the fast, short paths first and spill over onto a slower or
# longer one only as far as it still delivers them in time, so they reach the egress
# nearly in order. A path whose delay exceeds the smallest by more than `delay_cutoff`
# carries traffic only while every faster path is *full* (its expected wait is
# `full_after` seconds or more).
#
# Invariants:
# - Deterministic (no clock, no randomness): ties go to the first path in order.
# - Returns one of the given paths, or None only when given none.

from __future__ import annotations

from collections.abc import Sequence

from braid.core.path import PathState

_INF = float("inf")
DEFAULT_DELAY_CUTOFF = 0.2
DEFAULT_FULL_AFTER = 0.05
FEEDBACK_ALLOWANCE = 0.020
"""Seconds of data in flight that wait for feedback, not in a queue (see the comment):
feedback comes every 32 datagrams or 25 ms (`feedback_every`). 10 ms while it came every
16; with 32 and 10 ms a light flow after a bulk one went on the slow path (40 ms instead
of the fast one's 5: tests/core/test_equalize_bulk.py)."""


def path_delay(path: PathState) -> float:
    """The one-way propagation delay estimate of `path` in seconds: min RTT / 2."""
    low = path.min_rtt.value
    if low is not None:
        return low / 2
    srtt = path.srtt
    return srtt / 2 if srtt is not None else 0.0


def queue_delay(path: PathState, size: int, now: float, *, head: bool = False) -> float:
    """Seconds until a packet of `size` bytes queued now on `path` would leave the
    bottleneck: the pacer's wait, braid's own queue (not with `head`: the packet goes to
    the head of the queue) and the backlog at the link."""
    rate = path.cc.btl_bw
    wait = path.next_release - now
    if wait < 0:
        wait = 0.0
    wait += (size if head else path.queued_bytes + size) * path.wire_factor / rate
    low = path.min_rtt.value
    if low is not None:
        backlog = path.tracker.inflight / rate - low - FEEDBACK_ALLOWANCE
        if backlog > 0:
            wait += backlog
    return wait


class EarliestArrivalScheduler:
    """Minimum expected arrival time (queue + transmission + one-way delay)."""

    name = "earliest-arrival"

    def __init__(
        self,
        *,
        delay_cutoff: float = DEFAULT_DELAY_CUTOFF,
        full_after: float = DEFAULT_FULL_AFTER,
    ) -> None:
        self.delay_cutoff = delay_cutoff
        self.full_after = full_after

    def select_path(
        self,
        paths: Sequence[PathState],
        size: int,
        bucket: int,
        *,
        now: float,
        head: bool = False,
        hold: bool = True,
    ) -> PathState | None:
        """The path with the earliest expected arrival for a packet of `size` bytes (put at
        the head of its queue with `head`; without the paths' `hold` when not `hold`)."""
        count = len(paths)
        if count <= 1:
            return paths[0] if count else None
        # One pass over the paths, each read once: path_delay and queue_delay inlined
        # (this runs for every packet: 5.7 -> 2.1 us for 3 paths in bench/bench_core.py).
        # (A path's `hold`, set by the session's delay_floor, delays bulk DATA; a packet
        # put at the head of the queue does not wait.)
        holds = hold and not head
        delays: list[float] = []
        waits: list[float] = []
        for path in paths:
            low = path.min_rtt.low
            if low != _INF:
                delay = low / 2
            else:
                srtt = path.srtt
                delay = srtt / 2 if srtt is not None else 0.0
            if holds:
                delay += path.hold
            delays.append(delay)
            rate = path.cc.btl_bw
            wait = path.next_release - now
            if wait < 0.0:
                wait = 0.0
            wait += (size if head else path.queued_bytes + size) * path.wire_factor / rate
            if low != _INF:
                backlog = path.tracker.inflight / rate - low - FEEDBACK_ALLOWANCE
                if backlog > 0.0:
                    wait += backlog
            waits.append(wait)
        limit = min(delays) + self.delay_cutoff
        full_after = self.full_after
        best: PathState | None = None
        best_arrival = 0.0
        fast_full = True
        far = False
        for index, path in enumerate(paths):
            delay = delays[index]
            if delay > limit:
                far = True
                continue
            wait = waits[index]
            if wait < full_after:
                fast_full = False
            arrival = wait + delay
            if best is None or arrival < best_arrival:
                best = path
                best_arrival = arrival
        if far and fast_full:
            for index, path in enumerate(paths):
                delay = delays[index]
                if delay > limit:
                    arrival = waits[index] + delay
                    if arrival < best_arrival:
                        best = path
                        best_arrival = arrival
        return best
