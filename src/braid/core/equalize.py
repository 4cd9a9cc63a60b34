"""Which TCP flows the ingress marks for egress delay equalization (`equalize = "bulk"`).

A BBR sender sizes its window by the smallest round trip it has seen in the last 10 s.
Over paths of unequal delay that is the fastest path's, too small to fill the slower
ones, unless the egress holds every packet to the slowest path's delay (`equalize =
"tcp"`), which also makes every short exchange wait for the slowest path. "bulk" holds
only flows caught in BBR's PROBE_RTT, where the sender takes that minimum: every 10 s
its window drops to four packets for at least 200 ms, then it sends in bulk again.

The ingress sees each flow's packets as they enter the tunnel. A flow in bulk keeps
packets queued in the tunnel; when a packet of a flow that did so for a while finds (almost)
none queued after a gap, the ingress puts the flow on trial: it marks the flow's data
(FLAG_HOLD) and the egress holds marked packets to the slowest path's delay. PROBE_RTT
then shows as a trickle (a few packets per round trip) for at least `TRIAL_MIN` before
the flow sends in bulk again: the flow stays marked for good, and the sender's minimum
RTT, taken from held packets, covers every path. Anything else (the flow resumes at
once: a hiccup in bulk, or a response after a request; a long silence: an
application's pause; a trickle that goes on: a slow flow now) ends the trial: the flow
is unmarked and the egress lets the packets it held for the trial go at once (so a
mistaken trial costs next to nothing). A short exchange is never marked.

Sans-I/O: `on_packet` is told each TCP data packet entering the tunnel; `marked` is the
set of flow buckets whose packets go out with FLAG_HOLD.
"""

from __future__ import annotations

from typing import Final

RUN_TIME: Final = 1.0
RUN_BYTES: Final = 300_000
RUN_QUEUED: Final = 0.5
"""A flow may go on trial after a run this long and this large without an `IDLE_GAP`,
in which at least this share of its packets found more than `TRIGGER_QUEUED` of the flow
queued (a bulk flow; a light one sends each packet at once)."""
IDLE_GAP: Final = 0.1
"""A silence this long is an application's pause (PROBE_RTT's gaps are round trips)."""
TRIGGER_GAP: Final = 0.003
TRIGGER_QUEUED: Final = 3
"""A trial starts with a packet that comes this long after the flow's previous one and
finds no more than this many of the flow queued (PROBE_RTT sends its first packet when
no more than three others are in flight, a round trip after the last)."""
TRIAL_MIN: Final = 0.15
TRIAL_MAX: Final = 1.0
"""PROBE_RTT lasts max(200 ms, one round trip): the flow must send in bulk again between
these many seconds after its trial started."""
BURST_GAP: Final = 0.001
BURST: Final = 5
"""In bulk again: this many packets in a row each within `BURST_GAP` of the one before
(PROBE_RTT's window of four lets no more than three follow one another so)."""
TRICKLE_MIN: Final = 3
"""A trial needs this many packets before the bulk resumes (the trickle itself)."""
RTX_QUIET: Final = 0.5
"""No trial starts this many seconds after a retransmission, and one ends: the sender is
recovering from a loss (its pause is not PROBE_RTT; holding its resends slows it)."""
FORGET: Final = 30.0
"""A flow's record is dropped after this many seconds without data."""
_SWEEP: Final = 10.0

_FREE: Final = 0
_TRIAL: Final = 1
_HELD: Final = 2

# A flow's record: a list (one update per TCP data packet), with these fields.
(
    _LAST,
    _RUN_START,
    _RUN_BYTES,
    _STATE,
    _T0,
    _COUNT,
    _BURST,
    _RUN_PACKETS,
    _RUN_QUEUED,
    _HIGH,
    _RTX,
) = range(11)
_HALF32: Final = 1 << 31
_MASK32: Final = (1 << 32) - 1


class BulkFlows:
    """The ingress's view of its TCP flows for `equalize = "bulk"`."""

    def __init__(self) -> None:
        self._flows: dict[int, list[float]] = {}
        self.marked: set[int] = set()
        """Buckets whose data goes out with FLAG_HOLD (on trial or held)."""
        self.trials = 0
        """Trials started (most end at once: a hiccup in a bulk flow)."""
        self.held = 0
        """Trials that looked like PROBE_RTT: flows held from then on."""
        self._sweep = 0.0

    def on_packet(self, bucket: int, size: int, now: float, queued: int, seq: int = 0) -> None:
        """One TCP data packet of flow `bucket` (`size` bytes, TCP sequence number `seq`)
        enters the tunnel, where `queued` packets of the flow wait to be sent (`seq` 0:
        unknown)."""
        flows = self._flows
        flow = flows.get(bucket)
        if flow is None:
            if now >= self._sweep:
                self._forget(now)
            flows[bucket] = [now, now, float(size), _FREE, 0.0, 0.0, 0.0, 1.0, 0.0, seq, -RTX_QUIET]
            return
        gap = now - flow[_LAST]
        flow[_LAST] = now
        state = flow[_STATE]
        if state == _HELD:
            return
        if not seq or (seq - int(flow[_HIGH])) & _MASK32 < _HALF32:
            if seq:
                flow[_HIGH] = seq
        else:
            # A sequence number below one already seen: a retransmission.
            flow[_RTX] = now
            if state == _TRIAL:
                flow[_STATE] = _FREE
                self.marked.discard(bucket)
            flow[_RUN_BYTES] += size
            flow[_RUN_PACKETS] += 1
            return
        if state == _TRIAL:
            elapsed = now - flow[_T0]
            if gap < IDLE_GAP and elapsed <= TRIAL_MAX:
                flow[_COUNT] += 1
                flow[_BURST] = flow[_BURST] + 1 if gap < BURST_GAP else 0
                if flow[_BURST] < BURST:
                    return  # the trickle, or the first packets of a burst
                if elapsed >= TRIAL_MIN and flow[_COUNT] - flow[_BURST] >= TRICKLE_MIN:
                    flow[_STATE] = _HELD
                    self.held += 1
                    return
                if elapsed < TRIAL_MIN:
                    # In bulk again at once: a hiccup. The flow's run goes on.
                    flow[_STATE] = _FREE
                    self.marked.discard(bucket)
                    flow[_RUN_BYTES] += size
                    return
            # An application's pause, or a trickle too long: a run must start afresh.
            flow[_STATE] = _FREE
            self.marked.discard(bucket)
            self._restart(flow, now, size)
            return
        if gap >= IDLE_GAP:
            self._restart(flow, now, size)
            return
        if queued > TRIGGER_QUEUED:
            flow[_RUN_QUEUED] += 1
        elif (
            gap >= TRIGGER_GAP
            and now - flow[_RTX] >= RTX_QUIET
            and now - flow[_RUN_START] >= RUN_TIME
            and flow[_RUN_BYTES] >= RUN_BYTES
            and flow[_RUN_QUEUED] >= RUN_QUEUED * flow[_RUN_PACKETS]
        ):
            flow[_STATE] = _TRIAL
            flow[_T0] = now
            flow[_COUNT] = 1.0
            flow[_BURST] = 0.0
            self.marked.add(bucket)
            self.trials += 1
            return
        flow[_RUN_BYTES] += size
        flow[_RUN_PACKETS] += 1

    @staticmethod
    def _restart(flow: list[float], now: float, size: int) -> None:
        flow[_RUN_START] = now
        flow[_RUN_BYTES] = float(size)
        flow[_RUN_PACKETS] = 1.0
        flow[_RUN_QUEUED] = 0.0

    def _forget(self, now: float) -> None:
        self._sweep = now + _SWEEP
        horizon = now - FORGET
        flows = self._flows
        for bucket in [b for b, f in flows.items() if f[_LAST] < horizon]:
            del flows[bucket]
            self.marked.discard(bucket)
