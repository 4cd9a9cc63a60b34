# "fixed": pace at the configured rate hint, no adaptation (a baseline for comparison).
#
# Invariants: pacing_rate and btl_bw are the hint (or FALLBACK_RATE without one); the
# inflight cap is unbounded, so only pacing limits the path.

from __future__ import annotations

import math
from typing import Final

from braid.core.congestion.base import RateSample

FALLBACK_RATE: Final = 1_250_000.0  # 10 Mbit/s


class FixedRate:
    """Pacing at a fixed rate: the link's configured rate."""

    name = "fixed"

    def __init__(self, *, rate_hint: float | None = None, now: float) -> None:
        rate = rate_hint if rate_hint is not None and rate_hint > 0 else FALLBACK_RATE
        self.btl_bw = rate
        self.pacing_rate = rate
        self.cwnd = math.inf
        self.adjustments = 0  # (never adapts)
        self.reprobes = 0

    @property
    def state(self) -> str:
        """Always "fixed"."""
        return "fixed"

    @property
    def finding_rate(self) -> bool:
        """Never: it finds nothing."""
        return False

    def set_rate_hint(self, rate_hint: float | None, now: float) -> None:
        """Pace at the new configured rate (bytes/s; None: the fallback rate)."""
        rate = rate_hint if rate_hint is not None and rate_hint > 0 else FALLBACK_RATE
        self.btl_bw = rate
        self.pacing_rate = rate

    def on_feedback(self, sample: RateSample, now: float) -> None:
        """Nothing to learn."""

    def on_path_down(self, now: float) -> None:
        """Nothing to forget."""
