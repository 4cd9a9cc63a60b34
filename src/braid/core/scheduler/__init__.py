# Scheduler registry: names to scheduler classes (see base.Scheduler for the contract).
#
# Invariants:
# - `get_scheduler` returns a fresh, independent instance per call (schedulers are
#   stateful); an unknown name raises ValueError naming the valid ones.

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from braid.core.scheduler.base import Scheduler
from braid.core.scheduler.earliest_arrival import EarliestArrivalScheduler
from braid.core.scheduler.hash import HashScheduler
from braid.core.scheduler.redundant import RedundantScheduler
from braid.core.scheduler.round_robin import RoundRobinScheduler
from braid.core.scheduler.weighted import WeightedScheduler

_FACTORIES: Final[dict[str, Callable[[], Scheduler]]] = {
    RoundRobinScheduler.name: RoundRobinScheduler,
    WeightedScheduler.name: WeightedScheduler,
    HashScheduler.name: HashScheduler,
    EarliestArrivalScheduler.name: EarliestArrivalScheduler,
    RedundantScheduler.name: RedundantScheduler,
}

SCHEDULERS: Final = tuple(sorted(_FACTORIES))
"""The valid scheduler names."""


def get_scheduler(name: str) -> Scheduler:
    """A new scheduler instance by name; ValueError naming the valid ones if unknown."""
    factory = _FACTORIES.get(name)
    if factory is None:
        raise ValueError(f"unknown scheduler {name!r}; valid: {', '.join(SCHEDULERS)}")
    return factory()


__all__ = ["SCHEDULERS", "Scheduler", "get_scheduler"]
