# Earliest arrival: each packet goes to the path where it would reach the egress first.
#
# Expected arrival on a path = time until its pacer is free + (bytes queued + this packet)
# / estimated rate (btl_bw: the pacing rate averaged over its probing cycle) + one-way delay (`path_delay`: smoothed RTT / 2; 0 before any sample). Packets therefore fill the fast, short paths first and spill over onto a
# slower or longer one only as far as it still delivers them in time, so they reach the
# egress nearly in order. A path whose delay exceeds the smallest by more than
# `delay_cutoff` carries traffic only while every faster path is *full* (its queue
# holds `full_after` seconds or more at its rate).
#
# Invariants:
# - Deterministic (no clock, no randomness): ties go to the first path in order.
# - Returns one of the given paths, or None only when given none.

from __future__ import annotations

from collections.abc import Sequence

from braid.core.path import PathState

DEFAULT_DELAY_CUTOFF = 0.2
DEFAULT_FULL_AFTER = 0.05


def path_delay(path: PathState) -> float:
    """The one-way delay estimate of `path` in seconds: smoothed RTT / 2.

    The smoothed RTT includes a queue building at the link (its capacity fell, or our
    estimate is above it), which steers packets away from it until the pacer catches up.
    """
    srtt = path.srtt
    if srtt is not None:
        return srtt / 2
    low = path.min_rtt.value
    return low / 2 if low is not None else 0.0


def queue_delay(path: PathState, size: int, now: float) -> float:
    """Seconds until a packet of `size` bytes queued now on `path` would leave."""
    rate = path.cc.btl_bw  # the pacing rate averaged over the probing cycle
    wait = path.next_release - now
    if wait < 0:
        wait = 0.0
    return wait + (path.queued_bytes + size) / rate


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
        self, paths: Sequence[PathState], size: int, bucket: int, *, now: float
    ) -> PathState | None:
        """The path with the earliest expected arrival for a packet of `size` bytes."""
        count = len(paths)
        if count <= 1:
            return paths[0] if count else None
        delays = [path_delay(p) for p in paths]
        fastest = min(delays)
        limit = fastest + self.delay_cutoff
        best: PathState | None = None
        best_arrival = 0.0
        fast_full = True
        far: list[int] = []
        for index, path in enumerate(paths):
            delay = delays[index]
            if delay > limit:
                far.append(index)
                continue
            wait = queue_delay(path, size, now)
            if wait < self.full_after:
                fast_full = False
            arrival = wait + delay
            if best is None or arrival < best_arrival:
                best = path
                best_arrival = arrival
        if far and fast_full:
            for index in far:
                path = paths[index]
                arrival = queue_delay(path, size, now) + delays[index]
                if arrival < best_arrival:
                    best = path
                    best_arrival = arrival
        return best
