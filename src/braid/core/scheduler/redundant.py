# Redundant: every packet on the N best paths (voice, control); the egress keeps the first
# copy and drops the rest (session_seq duplicate filter).
#
# "Best" is the earliest expected arrival (see earliest_arrival), so copies go on the N
# paths that would deliver them first.
#
# Invariants:
# - `select_paths` returns min(N, len(paths)) distinct paths, best first; `select_path`
#   the best one. Deterministic.

from __future__ import annotations

from collections.abc import Sequence

from braid.core.path import PathState
from braid.core.scheduler.earliest_arrival import path_delay, queue_delay

DEFAULT_COPIES = 2


class RedundantScheduler:
    """Copies of each packet on the `copies` paths with the earliest expected arrival."""

    name = "redundant"
    redundant = True

    def __init__(self, *, copies: int = DEFAULT_COPIES) -> None:
        if copies < 1:
            raise ValueError(f"copies: must be >= 1, got {copies}")
        self.copies = copies

    def select_paths(
        self, paths: Sequence[PathState], size: int, bucket: int, *, now: float
    ) -> list[PathState]:
        """The `copies` paths with the earliest expected arrival, best first."""
        if len(paths) <= 1:
            return list(paths)
        ranked = sorted(paths, key=lambda p: queue_delay(p, size, now) + path_delay(p))
        return ranked[: self.copies]

    def select_path(
        self, paths: Sequence[PathState], size: int, bucket: int, *, now: float
    ) -> PathState | None:
        """The best path (the first copy's)."""
        chosen = self.select_paths(paths, size, bucket, now=now)
        return chosen[0] if chosen else None
