# The scheduler interface: which path carries the next packet.
#
# Invariants:
# - `select_path` returns one of the paths it was given, or None only if given none.
# - The caller passes only usable paths (live, lowest metric; see TunnelSession), in a
#   stable order (by path id), as a tuple that it replaces, never mutates, when the set or
#   a path's rate hint changes; schedulers may cache per tuple identity.
# - Schedulers are deterministic: no clock, no randomness; `now` is passed in.

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from braid.core.path import PathState


class Scheduler(Protocol):
    """Picks a path for each inner packet."""

    name: str

    def select_path(
        self, paths: Sequence[PathState], size: int, bucket: int, *, now: float
    ) -> PathState | None:
        """The path for a packet of `size` bytes in flow `bucket` (None if `paths` is empty)."""
        ...


def path_weights(paths: Sequence[PathState]) -> list[float]:
    """Relative weights from the paths' `rate_bps` hints.

    Paths without a (positive) hint weigh the mean of the known hints; if none is known,
    all weigh the same.
    """
    known = [p.rate_bps for p in paths if p.rate_bps is not None and p.rate_bps > 0]
    if not known:
        return [1.0] * len(paths)
    mean = sum(known) / len(known)
    top = max(known)
    return [
        (p.rate_bps if p.rate_bps is not None and p.rate_bps > 0 else mean) / top for p in paths
    ]


def paths_key(paths: Sequence[PathState]) -> tuple[tuple[int, int | None], ...]:
    """What a scheduler's cached state depends on: the path ids and their rate hints."""
    return tuple((p.path_id, p.rate_bps) for p in paths)
