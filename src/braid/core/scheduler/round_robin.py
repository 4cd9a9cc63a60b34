# Round-robin: the usable paths in turn, one packet each.
#
# Invariants:
# - Consecutive calls with the same paths return paths[0], paths[1], ... cyclically; when
#   the set changes the turn counter carries on modulo the new count.

from __future__ import annotations

from collections.abc import Sequence

from braid.core.path import PathState


class RoundRobinScheduler:
    """Each usable path in turn, regardless of size or rate."""

    name = "round-robin"

    def __init__(self) -> None:
        self._turn = 0

    def select_path(
        self, paths: Sequence[PathState], size: int, bucket: int, *, now: float
    ) -> PathState | None:
        """The next path in turn."""
        count = len(paths)
        if not count:
            return None
        turn = self._turn
        self._turn = turn + 1 if turn < (1 << 30) else 0
        return paths[turn % count]
