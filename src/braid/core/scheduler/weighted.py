# Weighted: bytes shared between paths in proportion to their configured rates.
#
# A byte-based fair queue over paths: each path keeps a virtual finish time advanced by
# `size / weight` per packet it carries; the next packet goes to the path whose finish
# time after carrying it is smallest (ties: the first in order). Weights come from the
# paths' `rate_bps` hints (equal if unknown, see `path_weights`).
#
# Invariants:
# - Over any run of calls with the same paths, the bytes given to each path differ from
#   the weighted share by less than one packet per path.
# - A path joining the set starts at the smallest virtual time of the others (no burst to
#   "catch up"); a path leaving forgets its state.

from __future__ import annotations

from collections.abc import Sequence

from braid.core.path import PathState
from braid.core.scheduler.base import path_weights, paths_key

_REBASE = 1e12


class WeightedScheduler:
    """Smooth, byte-accurate weighted sharing by configured rate."""

    name = "weighted"

    def __init__(self) -> None:
        self._paths: Sequence[PathState] | None = None
        self._key: tuple[tuple[int, int | None], ...] = ()
        self._inverse: list[float] = []
        self._virtual: list[float] = []
        self._by_id: dict[int, float] = {}

    def select_path(
        self, paths: Sequence[PathState], size: int, bucket: int, *, now: float
    ) -> PathState | None:
        """The path whose virtual finish time after this packet is the earliest."""
        if paths is not self._paths or type(paths) is not tuple:
            if not paths:
                return None
            self._refresh(paths)
        virtual = self._virtual
        inverse = self._inverse
        best = 0
        best_finish = virtual[0] + size * inverse[0]
        for index in range(1, len(virtual)):
            finish = virtual[index] + size * inverse[index]
            if finish < best_finish:
                best = index
                best_finish = finish
        virtual[best] = best_finish
        if best_finish > _REBASE:
            floor = min(virtual)
            self._virtual = [v - floor for v in virtual]
        return paths[best]

    def _refresh(self, paths: Sequence[PathState]) -> None:
        key = paths_key(paths)
        self._paths = paths
        if key == self._key:
            return
        by_id = dict(zip((k[0] for k in self._key), self._virtual, strict=True))
        self._key = key
        self._inverse = [1.0 / w for w in path_weights(paths)]
        known = [by_id[p.path_id] for p in paths if p.path_id in by_id]
        start = min(known) if known else 0.0
        self._virtual = [by_id.get(p.path_id, start) for p in paths]
