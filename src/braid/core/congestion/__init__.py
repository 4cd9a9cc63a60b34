# Congestion-control registry: names to controller factories.
#
# Invariants:
# - `get_congestion_control` returns a fresh instance per call (controllers are per path
#   and stateful); an unknown name raises ValueError naming the valid ones.

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from braid.core.congestion.base import CongestionControl, DeliveryTracker, RateSample
from braid.core.congestion.bbr import BbrLike
from braid.core.congestion.fixed import FixedRate

_FACTORIES: Final[dict[str, Callable[..., CongestionControl]]] = {
    BbrLike.name: BbrLike,
    FixedRate.name: FixedRate,
}

CONGESTION_CONTROLS: Final = tuple(sorted(_FACTORIES))
"""The valid congestion-control names."""


def get_congestion_control(
    name: str, *, rate_hint: float | None = None, now: float
) -> CongestionControl:
    """A new controller by name (`rate_hint` in bytes/s); ValueError if unknown."""
    factory = _FACTORIES.get(name)
    if factory is None:
        raise ValueError(
            f"unknown congestion control {name!r}; valid: {', '.join(CONGESTION_CONTROLS)}"
        )
    return factory(rate_hint=rate_hint, now=now)


__all__ = [
    "CONGESTION_CONTROLS",
    "CongestionControl",
    "DeliveryTracker",
    "RateSample",
    "get_congestion_control",
]
