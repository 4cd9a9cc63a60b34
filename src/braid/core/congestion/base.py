# Congestion control interface and the per-path delivery-rate estimator.
#
# Every path owns one `DeliveryTracker` (what was sent, what feedback says arrived) and one
# congestion controller (what rate to pace at, how many bytes may be in flight). The
# tracker turns cumulative FEEDBACK (highest path_seq, count received) into BBR-style rate
# samples: the bytes delivered between a datagram's send and its acknowledgement divided
# by the longer of the send and ack intervals, flagged app-limited when the path had
# nothing queued as the datagram left (such a sample says little about capacity).
#
# Invariants:
# - `inflight` is the bytes sent and not yet covered by feedback (acknowledged or counted
#   lost); it never goes negative and the log it is summed over is bounded (`LOG_LIMIT`).
# - Rates are bytes per second, times seconds; nothing here reads a clock.

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Final, Protocol

LOG_LIMIT: Final = 65536
"""Datagrams remembered per path awaiting feedback (older ones are forgotten as lost)."""
MIN_INTERVAL: Final = 0.001
"""Rate samples over a shorter interval are discarded (too noisy)."""


@dataclass(frozen=True, slots=True)
class RateSample:
    """What one FEEDBACK taught about a path."""

    delivery_rate: float | None
    """Bytes per second delivered over the sample's interval (None: no valid sample)."""
    app_limited: bool
    """The sampled datagram left while the path had nothing queued."""
    delivered: int
    """Bytes delivered on the path so far (cumulative)."""
    prior_delivered: int
    """`delivered` when the sampled datagram was sent (round counting)."""
    acked: int
    """Datagrams newly covered by this feedback."""
    lost: int
    """Datagrams newly counted lost by this feedback."""
    rtt: float | None
    """The RTT sample this feedback carried, if any."""
    min_rtt: float | None
    """The path's windowed minimum RTT."""
    inflight: int
    """Bytes still in flight after this feedback."""
    send_elapsed: float = 0.0
    """Seconds over which the newly delivered bytes were sent..."""
    ack_elapsed: float = 0.0
    """...and over which their delivery was reported: longer means the path delivered
    them slower than they were sent (a queue grew at its bottleneck)."""
    back_queue: float = 0.0
    """Seconds the feedback itself waited in a queue on its way back (its one-way delay
    over the minimum): the bytes delivered in that time are still counted in flight."""
    delivered_at: float | None = None
    """When the peer had received what this feedback reports, on the sender's clock (its
    arrival less the peer's hold and its wait on the way back, never earlier than the
    last); None: nothing new."""


class CongestionControl(Protocol):
    """A per-path congestion controller (pluggable by name, see the registry)."""

    name: str
    pacing_rate: float
    """Bytes per second the path's queue is drained at."""
    cwnd: float
    """Bytes that may be in flight (sent, not yet covered by feedback)."""
    btl_bw: float
    """The estimated bottleneck rate, bytes per second (for scheduling and queue limits)."""
    adjustments: int
    """Times the controller lowered its estimate because it overfed the link (a standing
    queue or a heavy loss): losses then were its own, not the link's (health checks)."""
    reprobes: int
    """Times the controller probed for the rate the path had again, after idle."""

    @property
    def state(self) -> str:
        """The controller's phase, for statistics (e.g. "startup", "probe_bw")."""
        ...

    @property
    def finding_rate(self) -> bool:
        """True while the controller looks for the path's rate from nothing (no rate hint)
        and would take padding beyond the flows' traffic to find it (fill PROBEs)."""
        ...

    def set_rate_hint(self, rate_hint: float | None, now: float) -> None:
        """The link's configured rate changed (bytes/s; None: no longer known)."""
        ...

    def on_feedback(self, sample: RateSample, now: float) -> None:
        """Update the model from one feedback's rate sample."""
        ...

    def on_path_down(self, now: float) -> None:
        """The path stopped working: forget what is in flight."""
        ...


class DeliveryTracker:
    """Send log and delivery-rate sampling for one path."""

    __slots__ = (
        "app_limited_until",
        "delivered",
        "delivered_at",
        "delivered_time",
        "first_sent_time",
        "inflight",
        "log",
    )

    def __init__(self, now: float) -> None:
        # (path seq, size, send time, delivered at send, delivered_time at send,
        #  first_sent_time at send, app limited, delivered_at at send)
        self.log: deque[tuple[int, int, float, int, float, float, bool, float]] = deque()
        self.inflight = 0
        self.delivered = 0
        self.delivered_time = now  # (a feedback's arrival less the peer's hold)...
        self.delivered_at = now  # ...and less its wait on the way back (on_feedback)
        self.first_sent_time = now
        self.app_limited_until = 0
        """While `delivered` is below this, what is sent is app-limited (BBR's bubble)."""

    def mark_app_limited(self) -> None:
        """The sender ran out of data: samples until the bubble is delivered are limited."""
        self.app_limited_until = self.delivered + self.inflight or 1

    def on_sent(self, seq: int, size: int, now: float, app_limited: bool) -> None:
        """Record one datagram (any type) sent now with path_seq `seq`."""
        log = self.log
        if self.app_limited_until:
            app_limited = True
        if not log:
            # Nothing in flight: the interval for the next sample starts now.
            self.first_sent_time = now
            self.delivered_time = now
            self.delivered_at = now
        log.append(
            (
                seq,
                size,
                now,
                self.delivered,
                self.delivered_time,
                self.first_sent_time,
                app_limited,
                self.delivered_at,
            )
        )
        self.inflight += size
        if len(log) > LOG_LIMIT:
            self.inflight -= log.popleft()[1]

    def on_feedback(
        self,
        highest: int,
        lost_delta: int,
        rtt: float | None,
        min_rtt: float | None,
        now: float,
        back_queue: float = 0.0,
        hold: float = 0.0,
    ) -> RateSample:
        """Cover every datagram up to `highest` and take a rate sample from the newest.

        `hold`: seconds the peer held this feedback after `highest` arrived (its
        echo_hold), and `back_queue` the seconds it then waited in a queue on its way
        back. The delivery interval is the longer of two readings, from `now - hold` and
        from `now - hold - back_queue` (see the comment below): reports bunched by a queue
        on the way back, or a held report followed by a prompt one, otherwise read as a
        burst of delivery (fake time, a 2.5 MB/s path filled both ways in startup: 3.0-3.4
        MB/s). The sample's `delivered_at` is the second reading."""
        log = self.log
        acked = 0
        acked_bytes = 0
        last: tuple[int, int, float, int, float, float, bool, float] | None = None
        while log and log[0][0] <= highest:
            last = log.popleft()
            acked += 1
            acked_bytes += last[1]
        rate: float | None = None
        app_limited = False
        prior = self.delivered
        send_elapsed = ack_elapsed = 0.0
        at: float | None = None
        if last is not None:
            self.inflight -= acked_bytes
            if self.inflight < 0:
                self.inflight = 0
            # Datagrams newly counted lost are not delivered (their bytes: the average).
            if lost_delta:
                acked_bytes -= acked_bytes * min(lost_delta, acked) // acked
            self.delivered += acked_bytes
            _, _, sent_at, prior, prior_time, first_sent, app_limited, prior_at = last
            # Two clocks for delivery: the feedback's arrival less the peer's hold (exact),
            # and that less the feedback's wait on the way back (`at`). The second removes
            # the bunching of a queue on the way back, but its wait is read from the
            # feedback's one-way delay, which also counts a stamp backdated behind the
            # peer's queued DATA; each errs in one direction only, so the longer of the
            # two intervals is taken (a short one reads as a burst of delivery).
            held = now - hold
            if held < self.delivered_time:
                held = self.delivered_time
            at = held - back_queue
            if at < self.delivered_at:
                at = self.delivered_at
            send_elapsed = sent_at - first_sent
            ack_elapsed = max(held - prior_time, at - prior_at)
            interval = max(ack_elapsed, send_elapsed)
            if interval >= MIN_INTERVAL:
                rate = (self.delivered - prior) / interval
            self.delivered_time = held
            self.delivered_at = at
            self.first_sent_time = sent_at
            if self.app_limited_until and self.delivered > self.app_limited_until:
                self.app_limited_until = 0
        return RateSample(
            rate,
            app_limited,
            self.delivered,
            prior,
            acked,
            lost_delta,
            rtt,
            min_rtt,
            self.inflight,
            send_elapsed,
            ack_elapsed,
            back_queue,
            at,
        )

    def expire(self, now: float, age: float) -> None:
        """Forget datagrams sent `age` seconds or more before `now` (their feedback is not
        coming). (Computed as the session computes when that is due: sent + age <= now,
        which rounds differently from sent <= now - age; that way a timer set for the
        moment never finds nothing to do, over and over.)"""
        log = self.log
        while log and log[0][2] + age <= now:
            self.inflight -= log.popleft()[1]
        if self.inflight < 0 or not log:
            self.inflight = 0

    def clear(self) -> None:
        """Forget everything in flight (the path went down)."""
        self.log.clear()
        self.inflight = 0
