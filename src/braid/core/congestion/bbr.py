# "bbr": a delay-based controller in the spirit of BBR v1, per path.
#
# Model: `btl_bw` is the maximum delivery rate over the last BW_WINDOW_ROUNDS round trips
# and BW_WINDOW_TIME seconds
# (app-limited samples only count when they raise it); `min_rtt` comes from the path's
# windowed minimum. The path paces at `gain x btl_bw` and keeps at most
# `CWND_GAIN x btl_bw x (min_rtt + ACK_DELAY) + btl_bw x back_queue` bytes in flight
# (feedback is delayed; `back_queue`: the latest feedback's wait in a queue on its way
# back, during which the path delivered data still counted in flight).
#
# States: STARTUP (gain 2.885, exits when btl_bw grew < 25 % over 3 rounds that were not
# app-limited, or on a round that was not app-limited and lost > 2 %), DRAIN (gain 1/2.885 until inflight <= BDP), then
# PROBE_BW cycling gains 1.125, 0.875, 1 x 6, one min_rtt each.
#
# Following a falling capacity (a 4G link): when for 3 rounds and 0.2 s every round that
# had data to send has its smallest RTT sample above `min_rtt + max(min_rtt / 4, 20 ms)`
# (or delivers less than 95 % of btl_bw and loses more than 2 %), a queue is standing at
# the bottleneck. If delivery fell short of the estimate, the bandwidth filter restarts
# from the last round's delivery rate (not below half the estimate, so one noisy round
# cannot collapse it; a real fall takes a few steps); otherwise we paced just above the
# capacity and the estimate is trimmed by 10 %. Then one round is paced at 0.875 x
# to drain it.
#
# A heavy loss answers sooner: when, since a feedback that reported a loss, at least a
# fifth of the datagrams covered (and 8) were lost while every RTT sample was inflated
# (min_rtt + max(min_rtt / 4, 10 ms)) and the bytes were reported over more time than
# they were sent in, the link's queue overflows: its capacity fell far below the
# estimate (a 40 Mbit/s link at 10). The estimate restarts at once from what the path
# delivered since that first loss (its queue was full, so that is the capacity; not
# below a quarter), and samples of datagrams sent before then are ignored. A 4x fall is
# followed in one round trip and a queue's length instead of three rounds and 0.2 s,
# halving at most per step (in fake time, 0.16-0.17 s and 262-447 datagrams lost instead
# of 0.55-1.19 s and 1094-1628). Random loss delays nothing, so it does not count.
#
# A path fed below its estimate (app-limited: the tunnel is not full, or the scheduler
# prefers other paths) says nothing about its capacity through its delivery rate, but
# its link can still be overfed: its rounds count as a standing queue too when the RTT
# is inflated and the round's bytes were reported over more time than they were sent in
# (send span < OVERFED x ack span) or more than 2 % were lost. The estimate then restarts
# from what the path delivered since the queue stood (the link was busy all along), not
# below a quarter of it. An RTT inflated by a longer route or by a queue on the way back
# changes neither span for long, so it does not count.
#
# A rising capacity shows up through the probing phase; a probe that raised the estimate
# by PROBE_AGAIN (seen a round trip late, while draining or cruising) is followed by the
# next probe at once instead of six cruising rounds, each twice as far above the
# estimate as the one before (1.125, 1.25, 1.5, then MAX_PROBE_GAIN).
#
# A capacity that came back while the path was idle is not seen by probing: the flows that
# start next are window-limited (a window fitted to what the paths deliver as they start)
# and feed a path little beyond its estimate. So a path fed again after a second of idle
# (samples below a tenth of its estimate) with its estimate below 0.8 of the highest it
# held in its last minute of use, or of its hint, probes in startup again, pacing no
# faster than that rate, until it is back there (then cruises), or its first round with
# the RTT inflated or a loss (the link did not recover), or 0.5 s. In fake time, a BBR-like
# flow over 20 + 40 Mbit/s after the 40 fell to 10 and came back while idle: 58.5 Mbit/s
# from its second half second instead of climbing from 24.8 to 53.8 over four seconds;
# over the link still at 10, the same goodput and no datagram dropped.
#
# With a rate hint (the link's configured rate) the controller starts cruising at it and
# btl_bw never exceeds it. Without one, the path is *finding its rate* during its first
# startup (`finding_rate`): the session may fill it with padding (fill PROBEs) so that
# startup sees a full pipe whatever the flows send, and a round kept full (by the fill or
# the flows: a sample not app-limited, or raising the estimate) ends that startup at once
# when its smallest RTT less the feedback's wait on the way back is inflated, or it lost
# more than 2 %, as the startup after idle does: the first sign of the link's queue says
# the pipe is full, and the probes must not keep overfilling a link that carries the
# flows' data. (Both portals fill at once: the feedback for one direction's fill waits
# behind the other's, which is not this path's queue.)
#
# Invariants: pacing_rate >= MIN_RATE; cwnd >= MIN_CWND; rates in bytes/s; no clock.

from __future__ import annotations

import math
from collections import deque
from typing import Final

from braid.core.congestion.base import RateSample

STARTUP_GAIN: Final = 2.885
DRAIN_GAIN: Final = 1 / 2.885
CYCLE: Final = (1.125, 0.875, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
"""Milder than BBR's 1.25/0.75: a path's pacer queue drains at the rate the scheduler
predicted within 12.5 %, so packets still reach the egress nearly in order."""
CWND_GAIN: Final = 2.0
PROBE_AGAIN: Final = 1.05
"""A probing round that raised the estimate by this much (the capacity grew: a 4G link
after a fade) is followed by the next probe at once instead of six cruising rounds."""
MAX_PROBE_GAIN: Final = 2.0
"""Successive probes that each found capacity probe 1.125, 1.25, 1.5 then 2 x the
estimate: a link back from a fade (5 -> 20 Mbit/s) is followed in a few round trips."""
BW_WINDOW_ROUNDS: Final = 8
BW_WINDOW_TIME: Final = 1.5
"""The max filter spans at least this long too (a falling capacity is caught by the
standing-queue rule, so the filter can be long enough to ride out slow samples)."""
IDLE_ROUND: Final = 0.5
"""A round whose largest sample is below this fraction of the estimate, without an inflated
RTT or losses, does not enter the bandwidth filter (the path was not kept busy)."""
MIN_RATE: Final = 12_500.0  # 100 kbit/s
INITIAL_RATE: Final = 125_000.0  # 1 Mbit/s: startup grows it from measurements
MIN_CWND: Final = 32 * 1500
ACK_DELAY: Final = 0.025
"""Feedback comes up to the default feedback_interval late: inflight covers it too."""
INITIAL_RTT: Final = 0.1
INFLATION_FACTOR: Final = 0.25
INFLATION_MARGIN: Final = 0.020
RESTART_FLOOR: Final = 0.5
"""A standing-queue restart lowers btl_bw to at least this fraction of it (each time)."""
INFLATION_ROUNDS: Final = 3
INFLATION_TIME: Final = 0.2
"""...and for at least this long (a CPU hiccup of the portals is not a standing queue)."""
LOSS_THRESHOLD: Final = 0.02
SHORTFALL: Final = 0.95
QUEUE_TRIM: Final = 0.9
"""A standing queue lowers the estimate to at most this fraction of it."""
OVERFED: Final = 0.9
"""An app-limited round whose bytes were sent in less than this fraction of the time their
delivery took, with its RTT inflated, grew a queue at the link."""
OVERFED_FLOOR: Final = 0.25
"""An overfed path's estimate restarts from its delivery rate since the queue stood, not
below this fraction of the estimate (each time)."""
MIN_STREAK: Final = 0.1
"""Seconds: the shortest span that delivery rate is taken over (the streak lasts at least
INFLATION_TIME anyway)."""
HEAVY_LOSS: Final = 0.2
"""A burst of feedback that counts this fraction of the path's datagrams lost (and at least
HEAVY_MIN_LOST), while the path delivered them slower than they were sent, is the link's
queue overflowing: its capacity fell far below the estimate. The estimate restarts at once
from the rate delivered since the first loss, not after INFLATION_ROUNDS."""
HEAVY_MIN_LOST: Final = 8
HEAVY_MIN_SPAN: Final = 0.02
"""Seconds: the shortest span the delivery rate is taken over after a heavy loss."""
HEAVY_MARGIN: Final = 0.010
"""...and every RTT sample of the burst at least this much (and INFLATION_FACTOR of the
minimum) above the minimum: the link's queue is full. Random loss delays nothing."""
REPROBE_IDLE: Final = 1.0
QUIET: Final = 0.1
REPROBE_BELOW: Final = 0.8
PEAK_MEMORY: Final = 60.0
"""A path idle for this many seconds (every sample below `QUIET` of its estimate: keepalive
probes only) whose estimate is below `REPROBE_BELOW` of the highest it held in its last
`PEAK_MEMORY` seconds of use (or of its rate hint) probes in startup again when it is fed
again: its link may have recovered while idle (a 4G link after a fade), and a
window-limited flow would find that only slowly, as its demand grows only with what the
paths deliver (3.25 s to over 6 s to 90 % of 20 + 40 Mbit/s in the lab; 0.25-0.75 s with it)."""
REPROBE_DONE: Final = 0.95
"""That startup paces no faster than the rate the path had (the link is known not to carry
more) and ends, cruising, once the estimate is back at this fraction of it..."""
REPROBE_TIME: Final = 0.5
REPROBE_ROUNDS: Final = 4
"""...or as startup does, or at its first round with the RTT inflated or a loss above 2 %
(the link has not recovered), or after this long and this many min RTTs (the path is fed
below its pacing rate, so its rounds are app-limited and its startup might not end)."""


class _Burst:
    """A run of feedback since a loss (the heavy-loss rule)."""

    __slots__ = ("ack_span", "covered", "delivered", "lost", "min_rtt", "send_span", "start")

    def __init__(self, start: float, delivered: int) -> None:
        self.start = start
        self.delivered = delivered  # the path's `delivered` at the first loss
        self.lost = 0
        self.covered = 0
        self.send_span = 0.0
        self.ack_span = 0.0
        self.min_rtt = math.inf


_STARTUP = 0
_DRAIN = 1
_PROBE_BW = 2
_STATE_NAMES: Final = ("startup", "drain", "probe_bw")


class BbrLike:
    """Pacing rate and inflight cap from delivery rate and min RTT (see module comment)."""

    name = "bbr"

    def __init__(self, *, rate_hint: float | None = None, now: float) -> None:
        # (round, end time, max rate of the round)
        self._bw_filter: deque[tuple[int, float, float]] = deque()
        self._round = 0
        self._next_round_delivered = 0
        self._round_max = 0.0
        self._round_max_all = 0.0  # including app-limited samples
        self._round_min_rtt = float("inf")
        self._round_min_fwd = float("inf")  # ...less the feedback's wait on the way back
        self._round_acked = 0
        self._round_lost = 0
        self._round_send_span = 0.0
        self._round_ack_span = 0.0
        self._inflated_rounds = 0
        self._inflated_since = now
        self._round_start = now  # when the round began, and `delivered` then
        self._round_start_delivered = 0
        self._streak_start = (now, 0)  # the same when the inflated streak began
        # A burst of losses (None without one); `delivered` at the last heavy restart
        # (losses of datagrams sent before it do not count again).
        self._burst: _Burst | None = None
        self._heavy_after = 0
        self.heavy_restarts = 0
        """Times a heavy loss restarted the estimate at once (statistics)."""
        self._full_bw = 0.0
        self._full_bw_count = 0
        self._cycle_index = 0
        self._cycle_start = now
        self._probe_base = math.inf  # btl_bw when the last probing round began
        self._probe_gain = CYCLE[0]
        self._min_rtt = INITIAL_RTT
        self._back_queue = 0.0  # the latest feedback's wait on the way back (seconds)
        self.adjustments = 0
        """Times the filter restarted because of a standing queue or a heavy loss."""
        self._cap = math.inf
        self._active_at = now  # the last sample of a path in use (QUIET)
        self.reprobes = 0
        """Times the path probed in startup again after an idle period (statistics)."""
        self.btl_bw = INITIAL_RATE
        self._peak = INITIAL_RATE  # the highest estimate of the last PEAK_MEMORY seconds...
        self._used = 0.0  # ...of use (seconds the path was in use since it was set)
        self._reprobe_to = 0.0  # pacing ceiling of a startup after idle (0: none)...
        self._reprobe_until = now  # ...and its end
        self._state = _STARTUP
        self._first = True  # the first startup, no rate hint yet: finding the rate
        self.pacing_rate = STARTUP_GAIN * INITIAL_RATE
        self.cwnd = float(max(CWND_GAIN * self.btl_bw * INITIAL_RTT, MIN_CWND))
        if rate_hint is not None and rate_hint > 0:
            self.set_rate_hint(rate_hint, now)

    def set_rate_hint(self, rate_hint: float | None, now: float) -> None:
        """Start again from a configured rate (bytes/s), or drop the ceiling (None).

        The configured rate is the link's nominal capacity: the estimate starts there and
        never exceeds it (delivery samples overshoot on a busy host), but may fall below.
        Without one, the estimate keeps what it measured and may grow."""
        if rate_hint is None or rate_hint <= 0:
            self._cap = math.inf
            return
        self._first = False
        self._cap = max(rate_hint, MIN_RATE)
        self.btl_bw = self._cap
        self._peak = self._cap
        self._used = 0.0
        self._bw_filter.clear()
        self._bw_filter.append((self._round, now, self.btl_bw))
        self._state = _PROBE_BW
        self._cycle_index = 2  # start cruising, not probing
        self._cycle_start = now
        self._full_bw = 0.0
        self._full_bw_count = 0
        self._update_rates()

    @property
    def state(self) -> str:
        """The controller's phase: startup, drain or probe_bw."""
        return _STATE_NAMES[self._state]

    @property
    def finding_rate(self) -> bool:
        """In the first startup without a rate hint: traffic beyond the flows' (fill
        PROBEs) lets it find the link's rate (see the module comment)."""
        return self._first

    def on_feedback(self, sample: RateSample, now: float) -> None:
        """Update the model from one feedback's rate sample."""
        if sample.min_rtt is not None:
            self._min_rtt = sample.min_rtt
        if sample.delivery_rate is not None and sample.delivery_rate >= QUIET * self.btl_bw:
            idle = now - self._active_at
            if idle < REPROBE_IDLE:
                self._used += idle  # (the peak is as old as the path's use since)
            elif self._state == _PROBE_BW and self.btl_bw < REPROBE_BELOW * min(
                self._peak, self._cap
            ):
                self._reprobe(min(self._peak, self._cap), now)
            self._active_at = now
        self._back_queue = sample.back_queue
        rate = sample.delivery_rate
        if sample.prior_delivered < self._heavy_after:
            rate = None  # sent before a heavy loss was answered: at the old capacity
        if rate is not None and rate > self._round_max_all:
            self._round_max_all = rate
        if (
            rate is not None
            and rate > self._round_max
            and (not sample.app_limited or rate > self.btl_bw)
        ):
            self._round_max = rate
            if rate > self.btl_bw:
                self.btl_bw = min(rate, self._cap)
        if sample.rtt is not None:
            if sample.rtt < self._round_min_rtt:
                self._round_min_rtt = sample.rtt
            forward = sample.rtt - sample.back_queue
            if forward < self._round_min_fwd:
                self._round_min_fwd = forward
        self._round_acked += sample.acked
        self._round_lost += sample.lost
        self._round_send_span += sample.send_elapsed
        self._round_ack_span += sample.ack_elapsed
        if self._state != _DRAIN and (sample.lost or self._burst is not None):
            self._check_burst(sample, now)
        if sample.acked and sample.prior_delivered >= self._next_round_delivered:
            self._end_round(sample, now)
        self._update_cycle(sample, now)
        if self._reprobe_to and self._state == _STARTUP:
            if self.btl_bw >= REPROBE_DONE * self._reprobe_to:
                # The rate it had is back: cruise (it never paced above it).
                self._state = _PROBE_BW
                self._cycle_index = 2
                self._cycle_start = now
            elif now >= self._reprobe_until:
                self._state = _DRAIN  # it found no more: drain what the probe queued
        if self.btl_bw >= self._peak or self._used > PEAK_MEMORY:
            self._peak = self.btl_bw
            self._used = 0.0
        self._update_rates()

    def on_path_down(self, now: float) -> None:
        """The path stopped working: probe from a cruising rate when it is back."""
        self._inflated_rounds = 0
        self._round_max = 0.0
        self._round_max_all = 0.0  # including app-limited samples
        self._round_min_rtt = float("inf")

    # -- internals ----------------------------------------------------------------------

    def _reprobe(self, target: float, now: float) -> None:
        """Probe in startup again from the current estimate (the link may have recovered),
        pacing no faster than `target`, the rate it had."""
        self._reprobe_to = target
        self._reprobe_until = now + max(REPROBE_TIME, REPROBE_ROUNDS * self._min_rtt)
        self._state = _STARTUP
        self._full_bw = self.btl_bw
        self._full_bw_count = 0
        self._inflated_rounds = 0
        self.reprobes += 1

    def _check_burst(self, sample: RateSample, now: float) -> None:
        """A heavy loss: restart the estimate from what the link delivered since it began."""
        burst = self._burst
        # (Spans from where the peer received what the feedback reports: a queue growing
        # on the way back would stretch them.)
        at = now if sample.delivered_at is None else sample.delivered_at
        if burst is None:
            if sample.prior_delivered < self._heavy_after:
                return  # sent before the last restart: its loss is already answered
            # From the first loss on the link's queue is full: it delivers at capacity.
            self._burst = _Burst(at, sample.delivered)
            return
        burst.lost += sample.lost
        burst.covered += sample.acked
        burst.send_span += sample.send_elapsed
        burst.ack_span += sample.ack_elapsed
        if sample.rtt is not None and sample.rtt < burst.min_rtt:
            burst.min_rtt = sample.rtt
        span = at - burst.start
        if span > 2 * self._min_rtt + INFLATION_TIME:
            self._burst = None  # never heavy
            return
        lost = burst.lost
        min_rtt = self._min_rtt
        if (
            span < HEAVY_MIN_SPAN
            or lost < HEAVY_MIN_LOST
            or lost < HEAVY_LOSS * burst.covered
            or burst.ack_span * OVERFED <= burst.send_span
            # A full queue delays every datagram that gets through; random loss does not.
            or burst.min_rtt <= min_rtt + max(INFLATION_FACTOR * min_rtt, HEAVY_MARGIN)
        ):
            return
        restart = (sample.delivered - burst.delivered) / span
        # (Below the estimate, also in startup, which overshoots on purpose: the rate is
        # what the link delivered with its queue full, so startup's estimate is not trimmed.)
        trim = 1.0 if self._state == _STARTUP else QUEUE_TRIM
        restart = min(max(restart, OVERFED_FLOOR * self.btl_bw), trim * self.btl_bw)
        filt = self._bw_filter
        filt.clear()
        filt.append((self._round, now, restart))
        self.btl_bw = min(max(restart, MIN_RATE), self._cap)
        self.heavy_restarts += 1
        self.adjustments += 1
        self._burst = None
        # The round so far measured the old capacity and counted the losses just answered.
        self._clear_round_counts()
        self._heavy_after = sample.delivered
        self._inflated_rounds = 0
        if self._state == _STARTUP:
            self._state = _DRAIN
        else:
            self._cycle_index = 1  # one round below 1 to drain the queue
            self._cycle_start = now

    def _end_round(self, sample: RateSample, now: float) -> None:
        self._next_round_delivered = sample.delivered
        self._round += 1
        round_max = self._round_max
        filt = self._bw_filter
        min_rtt = self._min_rtt
        inflated = self._round_min_rtt > min_rtt + max(INFLATION_FACTOR * min_rtt, INFLATION_MARGIN)
        total = self._round_acked
        lossy = total > 0 and self._round_lost > LOSS_THRESHOLD * total
        # A round far below the estimate with no queue at the link (no inflated RTT, no
        # loss) was not kept busy, whatever its samples say (the first datagrams of a
        # burst on an idle path are not marked app-limited): it says nothing about the
        # capacity and does not enter the filter, or the estimate would fall to it once
        # the higher entries age out (a link carrying acknowledgements only: 0.2-0.4 of
        # its rate in the lab). A capacity that fell shows a queue or losses.
        if round_max > 0 and (round_max >= IDLE_ROUND * self.btl_bw or inflated or lossy):
            filt.append((self._round, now, round_max))
        while (
            filt
            and filt[0][0] <= self._round - BW_WINDOW_ROUNDS
            and filt[0][1] < now - BW_WINDOW_TIME
        ):
            filt.popleft()
        # A queue standing at the bottleneck: the RTT stays inflated while we had data to
        # send (or, short of the estimate, we lose). It must last (3 rounds, 0.2 s): a CPU
        # hiccup of the portals inflates RTTs for a moment too.
        short = 0 < round_max < SHORTFALL * self.btl_bw
        # In startup an app-limited round counts too when it delivered something: a path
        # that the scheduler feeds below its pacing rate (startup paces at 2.9 x) still
        # builds a queue at the link, and startup must end then (BBR would wait for a
        # full pipe).
        busy = round_max > 0 or (self._state == _STARTUP and self._round_max_all > 0)
        # Later, an app-limited round counts only when its RTT is inflated and the path
        # delivered slower than it was fed (the round's bytes were reported over a longer
        # time than they were sent in) or lost more than 2 %: the link's queue grows or
        # overflows although we send below the estimate, so the estimate is above its
        # capacity (a 4G fade while the tunnel is not full). An RTT inflated by the
        # reverse direction's queue or random loss alone is not that.
        overfed = (
            not busy
            and self._state != _STARTUP
            and self._round_max_all > 0
            and inflated
            and (lossy or self._round_ack_span * OVERFED > self._round_send_span)
        )
        if (busy and (inflated or (short and lossy))) or overfed:
            if not self._inflated_rounds:
                self._inflated_since = now
                self._streak_start = (self._round_start, self._round_start_delivered)
            self._inflated_rounds += 1
        else:
            self._inflated_rounds = 0
        standing = (
            self._inflated_rounds >= INFLATION_ROUNDS
            and now - self._inflated_since >= INFLATION_TIME
        )
        if standing:
            # Delivery short of the estimate: the capacity fell; restart from what was
            # just delivered (at most halving per step). Otherwise we pace just above the
            # capacity: trim the estimate so the queue drains.
            if overfed:
                # The link's queue never emptied since the streak began (every round's
                # smallest RTT was inflated), so what it delivered since is its capacity.
                began, delivered = self._streak_start
                restart = (sample.delivered - delivered) / max(now - began, MIN_STREAK)
                restart = max(restart, OVERFED_FLOOR * self.btl_bw)
            elif short or lossy:
                restart = max(self._round_max_all, RESTART_FLOOR * self.btl_bw)
            else:
                restart = self.btl_bw
            filt.clear()
            filt.append((self._round, now, min(restart, QUEUE_TRIM * self.btl_bw)))
            self.adjustments += 1
            self._inflated_rounds = 0
            if self._state == _STARTUP:
                self._state = _DRAIN
            else:
                self._state = _PROBE_BW
                self._cycle_index = 1  # one round below 1 to drain the queue
                self._cycle_start = now
        if filt:
            self.btl_bw = min(max(max(r for _, _, r in filt), MIN_RATE), self._cap)
        if self._reprobe_to and self._state == _STARTUP and (inflated or lossy):
            # Probing after idle (below the rate the path had): the first sign of a queue
            # at the link says it has not recovered; drain what the probe queued.
            self._state = _DRAIN
        elif (
            self._first
            and self._state == _STARTUP
            and round_max > 0  # (a round kept full: the fill PROBEs or the flows)
            and (
                lossy
                or self._round_min_fwd > min_rtt + max(INFLATION_FACTOR * min_rtt, INFLATION_MARGIN)
            )
        ):
            # Finding the rate: the first sign of the link's queue ends startup (the
            # estimate is what the link delivered with its queue building).
            self._state = _DRAIN
        elif self._state == _STARTUP and lossy and round_max > 0:
            # Startup overshot (drops at the bottleneck): the pipe is full. Keep the
            # estimate (like BBR) and drain what the overshoot queued.
            self._state = _DRAIN
        elif (
            self._state == _STARTUP
            and not self._reprobe_to  # (its rounds may plateau at what the flows ask)
            and not sample.app_limited
            and round_max > 0
        ):
            if self.btl_bw >= self._full_bw * 1.25:
                self._full_bw = self.btl_bw
                self._full_bw_count = 0
            else:
                self._full_bw_count += 1
                if self._full_bw_count >= 3:
                    self._state = _DRAIN
        self._clear_round_counts()
        self._round_min_rtt = float("inf")
        self._round_min_fwd = float("inf")
        self._round_start = now
        self._round_start_delivered = sample.delivered

    def _clear_round_counts(self) -> None:
        """Start the round's rate, loss and span counts again."""
        self._round_max = 0.0
        self._round_max_all = 0.0  # including app-limited samples
        self._round_acked = 0
        self._round_lost = 0
        self._round_send_span = 0.0
        self._round_ack_span = 0.0

    def _update_cycle(self, sample: RateSample, now: float) -> None:
        # Inflight includes up to ACK_DELAY of unreported data: the drained target too.
        target = self.btl_bw * (self._min_rtt + ACK_DELAY + self._back_queue)
        if self._state == _DRAIN:
            if sample.inflight <= target:
                self._state = _PROBE_BW
                self._cycle_index = 2
                self._cycle_start = now
            return
        if self._state != _PROBE_BW:
            return
        elapsed = now - self._cycle_start
        if elapsed >= self._min_rtt:
            index = self._cycle_index
            if index == 1 and sample.inflight > target and elapsed < 2 * self._min_rtt + ACK_DELAY:
                return  # stay draining until the queue we built is gone (bounded)
            index = (index + 1) % len(CYCLE)
            if index >= 2 and self.btl_bw >= PROBE_AGAIN * self._probe_base:
                # The last probe found capacity (its samples come a round trip late,
                # while draining or cruising): probe again now instead of cruising on,
                # and twice as far above the estimate.
                index = 0
                self._probe_gain = min(1 + 2 * (self._probe_gain - 1), MAX_PROBE_GAIN)
            elif index >= 2:
                self._probe_gain = CYCLE[0]
            if index == 0:
                self._probe_base = self.btl_bw
            self._cycle_index = index
            self._cycle_start = now

    def _update_rates(self) -> None:
        bw = self.btl_bw
        state = self._state
        target = self._reprobe_to
        if target and state != _STARTUP:
            self._reprobe_to = target = 0.0  # the probe after idle is over
        if state != _STARTUP:
            self._first = False  # (its rate is found)
        if state == _STARTUP:
            gain = STARTUP_GAIN
        elif state == _DRAIN:
            gain = DRAIN_GAIN
        else:
            gain = self._probe_gain if self._cycle_index == 0 else CYCLE[self._cycle_index]
        self.pacing_rate = max(gain * bw if not target else min(gain * bw, target), MIN_RATE)
        window = (STARTUP_GAIN if state == _STARTUP else CWND_GAIN) * bw
        if target and window > CWND_GAIN * target:
            window = CWND_GAIN * target
        # (plus what was delivered while its report waits in a queue on the way back)
        self.cwnd = max(window * (self._min_rtt + ACK_DELAY) + bw * self._back_queue, MIN_CWND)
