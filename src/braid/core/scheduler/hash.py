# Hash: each flow bucket sticks to one path (weighted rendezvous / HRW hashing).
#
# Every (bucket, path id) pair gets a pseudo-random score from a fixed 64-bit mix; a
# bucket goes to the path with the highest `weight / -ln(u)` (u the score in (0, 1)), so
# the share of buckets per path follows the weights and, when the path set changes, only
# the buckets whose winner left (or that the newcomer wins) move.
#
# Invariants:
# - The choice depends only on the bucket, the path ids and their weights: the same in
#   every process, across restarts and on both portals.
# - Choices are cached per path set; the cache is rebuilt when the set changes.

from __future__ import annotations

import math
from collections.abc import Sequence

from braid.core.path import PathState
from braid.core.scheduler.base import path_weights, paths_key

_MASK64 = (1 << 64) - 1


def _mix64(value: int) -> int:
    """splitmix64's finaliser: a fixed, well-spread 64-bit hash of an integer."""
    value = (value + 0x9E3779B97F4A7C15) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


def rendezvous_score(bucket: int, path_id: int, weight: float) -> float:
    """The weighted rendezvous score of `path_id` for `bucket` (higher wins)."""
    unit = (_mix64((bucket << 8) | path_id) + 1) / (_MASK64 + 2)  # in (0, 1)
    return -weight / math.log(unit)


class HashScheduler:
    """Sticky per-flow placement with minimal movement when paths come and go."""

    name = "hash"

    def __init__(self) -> None:
        self._paths: Sequence[PathState] | None = None
        self._key: tuple[tuple[int, int | None], ...] = ()
        self._weights: list[float] = []
        self._cache: dict[int, int] = {}

    def select_path(
        self, paths: Sequence[PathState], size: int, bucket: int, *, now: float
    ) -> PathState | None:
        """The path that bucket `bucket` is pinned to among `paths`."""
        if paths is not self._paths or type(paths) is not tuple:
            if not paths:
                return None
            self._refresh(paths)
        index = self._cache.get(bucket)
        if index is None:
            weights = self._weights
            index = 0
            best_score = rendezvous_score(bucket, paths[0].path_id, weights[0])
            for candidate in range(1, len(paths)):
                score = rendezvous_score(bucket, paths[candidate].path_id, weights[candidate])
                if score > best_score:
                    index = candidate
                    best_score = score
            self._cache[bucket] = index
        return paths[index]

    def _refresh(self, paths: Sequence[PathState]) -> None:
        key = paths_key(paths)
        if key != self._key:
            self._key = key
            self._weights = path_weights(paths)
            self._cache = {}
        self._paths = paths
