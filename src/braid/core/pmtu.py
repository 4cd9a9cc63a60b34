# Path MTU discovery by probing (issue 7, point 1), in the spirit of DPLPMTUD (RFC 8899):
# no ICMP is trusted; PROBE datagrams of a chosen size either come back acknowledged
# (the FEEDBACK answering one at once reports its path_seq as the highest received) or
# not.
#
# Sizes are *session datagram* bytes (what the session emits for one path; the security
# layer and UDP/IP add their headers below it).
#
# Probing starts when the path first carries DATA (the session calls `start`; an idle
# session never probes), so a TCP flow's SYN has the MTU confirmed before the flow's
# data needs it. Search. The first probe is at `upper` (what the session needs for its largest
# datagram): on the usual 1500-byte links it is confirmed at once and nothing else
# happens. Three unanswered tries at a size make it *bad*; the search then halves the
# interval between the largest confirmed size (at first `base`, which every path is
# assumed to carry) and the smallest bad one until they are within `STEP` bytes. `mtu`
# is always the largest confirmed size: until the first probe comes back (one round
# trip), larger packets travel in fragments rather than into a possible black hole. A
# finished search is repeated after `REPROBE` seconds (confirming `upper` again, or
# looking for a path that grew).
#
# Invariants:
# - base <= mtu <= upper; at most one probe in flight; `due` never returns a size
#   outside [base, upper]. No clock: `now` is passed in.
from __future__ import annotations

import math
from typing import Final

BASE: Final = 1208
"""1280 (the IPv6 minimum MTU) - 48 (IPv6 + UDP headers) - 24 (the record's key field and
tag): every path is assumed to carry this."""
STEP: Final = 16
TRIES: Final = 3
REPROBE: Final = 60.0
SEARCH_INTERVAL: Final = 0.05


class PathMtu:
    """The probing state of one path."""

    __slots__ = (
        "bad",
        "base",
        "mtu",
        "next_probe",
        "ok",
        "probe_size",
        "probe_stamp",
        "probes_sent",
        "sent_at",
        "tries",
        "upper",
    )

    def __init__(self, upper: int, *, now: float, base: int = BASE) -> None:
        self.upper = upper
        self.base = min(base, upper)
        self.ok = self.base
        self.mtu = self.base
        self.bad = upper + 1
        self.probe_size: int | None = None
        self.probe_stamp = -1
        self.sent_at = 0.0
        self.tries = 0
        self.next_probe = math.inf  # until `start`
        self.probes_sent = 0

    @property
    def started(self) -> bool:
        """True once probing started (the path carried DATA)."""
        return self.next_probe != math.inf or self.probe_size is not None

    def start(self, now: float) -> None:
        """Begin probing (no-op if started): the session sent DATA on the path."""
        if not self.started:
            self.next_probe = now

    def due(self, now: float, timeout: float) -> int | None:
        """The size of a probe to send now (None: none); `timeout` is how long an
        unanswered probe is waited for."""
        size = self.probe_size
        if size is not None:  # in flight
            if self.sent_at + timeout > now:  # (the expression of next_event)
                return None
            if self.tries >= TRIES:
                self._failed(size, now)
                return None
            return size  # try again
        if self.next_probe > now:
            return None
        size = self._next_size()
        self.tries = 0
        return size

    def next_event(self, timeout: float) -> float:
        """When `due` may next return a size."""
        if self.probe_size is not None:
            return self.sent_at + timeout
        return self.next_probe

    def on_sent(self, size: int, stamp: int, now: float) -> None:
        """A probe of `size` bytes left, identified by `stamp` (its wire path_seq)."""
        if size != self.probe_size:
            self.tries = 0
        self.probe_size = size
        self.probe_stamp = stamp
        self.sent_at = now
        self.tries += 1
        self.probes_sent += 1

    def on_echo(self, stamp: int, now: float) -> None:
        """Feedback reported `stamp` (a path_seq) as the highest arrived: if it is the
        probe's, the probe arrived."""
        size = self.probe_size
        if size is None or stamp != self.probe_stamp:
            return
        self.probe_size = None
        self.ok = max(self.ok, size)
        if size >= self.bad:
            self.bad = self.upper + 1  # the path grew
        self._update(now)

    def _failed(self, size: int, now: float) -> None:
        self.probe_size = None
        self.bad = min(self.bad, size)
        if self.ok >= self.bad:
            self.ok = self.base  # the path shrank below what it carried
        self._update(now)

    def _update(self, now: float) -> None:
        self.mtu = self.ok
        settled = self.bad - self.ok <= STEP
        self.next_probe = now + (REPROBE if settled else SEARCH_INTERVAL)

    def _next_size(self) -> int:
        if self.bad > self.upper or self.bad - self.ok <= STEP:
            return self.upper  # first, or a settled search repeated: the top again
        return (self.ok + self.bad) // 2
