# Per-path state: send counters, receive tracking for feedback, and what feedback taught us.
#
# Invariants:
# - Sequence numbers are kept unwrapped (plain ints); only the wire carries them modulo
#   2**32. The first datagram a sender sends on a path has path_seq `first_seq` (0, or
#   where the session's numbering of a path removed before left off: the number is part
#   of the record's nonce); everything before it counts as delivered. A receiver takes
#   the first number it sees on a new path as its start (what came before it is not
#   counted, so never counted twice).
# - Receive side: a path_seq is counted at most once (a per-path replay window drops link
#   duplicates), so `rx_received` is the number of distinct datagrams that arrived and the
#   peer's loss figure `(highest + 1) - received` is exact once reordering settles. After
#   RESYNC_AFTER consecutive too-old numbers the window restarts at the peer's numbering.
# - Send side: only fresher feedback applies (stale, reordered feedback is ignored):
#   `delivered` never decreases, `lost` is recomputed from it (and shrinks when late
#   datagrams are accounted for); RTT follows RFC 6298 (srtt, rttvar) plus a windowed min.
# - One-way delay is relative: `rx_time - tx_time` in a session-wide frame whose clock
#   offset is unknown but the same on every path, so only differences between paths (and
#   over time) mean anything. `owd` is its EWMA (gain 1/8), `jitter` the mean deviation of
#   samples from it (gain 1/16), `owd_min` its windowed minimum.
# - Send side pacing (owned by TunnelSession): `queue` holds the datagrams scheduled on
#   this path and not yet released, in session_seq order (paths are FIFO end to end);
#   `queued_bytes` is the sum of their inner sizes; `next_release` is when the pacer may
#   release the next one. `tracker` and `cc` see every datagram sent and every feedback.
# - Nothing here reads a clock: every method takes `now` (seconds).

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Final

from braid.core.congestion import CongestionControl, DeliveryTracker, get_congestion_control
from braid.core.pmtu import PathMtu
from braid.core.replay import ReplayWindow
from braid.core.wire import MASK32, FeedbackEntry, PathInfo, unwrap32

NO_LIMIT: Final = 1 << 30
"""A path MTU that limits nothing (TCP paths, unprobed paths)."""
PATH_REPLAY_WINDOW: Final = 4096
"""Receive-side duplicate window per path, in datagrams (reordering within one path)."""
RESYNC_AFTER: Final = 64
"""After this many consecutive too-old sequence numbers, a receive window starts over
at the peer's current numbering (recovers from one corrupt datagram far ahead)."""
NO_SESSION_SEQ: Final = -(1 << 62)
"""`rx_session_seq` of a path that has passed no session_seq yet."""
LINK_OVERHEAD: Final = 59
"""Bytes a session datagram costs on a link beyond its own length: what the security layer
adds to every record (the 1-byte key field and the 16-byte AEAD tag, docs/protocol.md) and
the UDP, IPv4 and Ethernet headers (42). Pacing at a link's rate counts them all: with the
record's bytes (24 then) left out, a path paced at its configured rate sent 1.6 % more than the
link carried, and a queue grew in the link's buffer until the standing-queue rule cut the
estimate."""
RTT_MAX: Final = 10.0
"""RTT samples at or above this (seconds) are discarded."""
MIN_FILTER_WINDOW: Final = 10.0
"""Windowed minimum (min RTT, min one-way delay) over the last 10 to 20 seconds."""
_OWD_GAIN: Final = 1.0 / 8.0
_JITTER_GAIN: Final = 1.0 / 16.0
_INF: Final = math.inf
_HALF32: Final = 1 << 31


class WindowedMin:
    """The minimum of samples seen over the last `window` to `2 * window` seconds."""

    __slots__ = ("_previous", "current", "low", "renew_at", "window")

    def __init__(self, window: float) -> None:
        self.window = window
        self.current = _INF
        """The minimum of the current epoch."""
        self.renew_at = -_INF
        """When the current epoch ends (a sample at or after it starts a new one)."""
        self._previous = _INF
        self.low = _INF
        """The windowed minimum, infinity before the first sample (`value` without the
        None; kept up to date by `update`, for the scheduler's per-packet reads)."""

    def update(self, sample: float, now: float) -> None:
        """Add one sample taken at `now` (callers may skip samples that change nothing:
        those with `sample >= current` and `now < renew_at`)."""
        if now >= self.renew_at:
            recent = now < self.renew_at + self.window
            self._previous = previous = self.current if recent else _INF
            self.current = sample
            self.renew_at = now + self.window
            self.low = sample if sample < previous else previous
        elif sample < self.current:
            self.current = sample
            if sample < self.low:
                self.low = sample

    @property
    def value(self) -> float | None:
        """The windowed minimum, None before the first sample."""
        low = self.low
        return None if low == _INF else low


@dataclass(frozen=True, slots=True)
class PathStatistics:
    """A snapshot of one path (what the API, CLI and dashboard read)."""

    path_id: int
    up: bool
    rate_bps: int | None
    metric: int
    datagrams_sent: int
    bytes_sent: int
    datagrams_received: int
    bytes_received: int
    delivered: int
    lost: int
    srtt: float | None
    rttvar: float | None
    min_rtt: float | None
    latest_rtt: float | None
    owd: float | None
    owd_min: float | None
    jitter: float
    last_send_time: float | None
    last_receive_time: float | None
    congestion: str = ""
    pacing_rate: float = 0.0
    """Bytes per second the path is paced at."""
    btl_bw: float = 0.0
    """Estimated bottleneck rate, bytes per second."""
    cwnd: float = 0.0
    inflight: int = 0
    queued_bytes: int = 0
    standby: bool = False
    # issue 6: liveness state
    state: str = "down"
    """"up", "probation" (returned, waiting out its hysteresis), "degraded" (lossy or slow
    beyond the thresholds: out of the scheduler for a while) or "down"."""
    mtu: int | None = None
    """issue 7: the largest datagram the session sends on the path (None: no limit, a TCP
    path); larger inner packets travel in fragments."""
    download_bps: int | None = None
    """Local portal: the link's download rate hint, told to the remote portal (PATH_INFO)."""
    estimate_restarts: int = 0
    """Times the congestion controller lowered its estimate because the link's queue stood
    or overflowed (the link's capacity fell)."""
    reprobes: int = 0
    """Times it probed again, after idle, for the rate the path had (the link may have
    recovered)."""
    fill_bytes: int = 0
    """Bytes of fill PROBEs sent while the path's rate was unknown (`probe_rates`)."""

    @property
    def loss_rate(self) -> float:
        """Fraction of the datagrams the peer accounted for that were lost."""
        total = self.delivered + self.lost
        return self.lost / total if total else 0.0


class PathState:
    """Everything one end knows about one path (both directions)."""

    __slots__ = (
        "acked_highest",
        "awaiting",
        "backdated",
        "bytes_received",
        "bytes_sent",
        "cc",
        "created",
        "cwnd_limited",
        "datagrams_received",
        "datagrams_sent",
        "degraded_until",
        "delivered",
        "down_since",
        "download_bps",
        "features_due",
        "features_left",
        "feedback_due",
        "feedback_pending",
        "fill_bytes",
        "fill_from",
        "flagged",
        "health_adjustments",
        "health_delivered",
        "health_lost",
        "hello_acked",
        "hello_due",
        "hold",
        "info_due",
        "info_left",
        "jitter",
        "jump_at",
        "jump_tokens",
        "last_receive_time",
        "last_send_time",
        "latest_rtt",
        "lost",
        "metric",
        "min_rtt",
        "mtu",
        "next_release",
        "next_seq",
        "owd",
        "owd_min",
        "path_id",
        "peer_info",
        "pmtu",
        "probation",
        "probation_until",
        "queue",
        "queued_bytes",
        "rate_bps",
        "reported_lost",
        "rttvar",
        "rx_floor",
        "rx_highest",
        "rx_highest_time",
        "rx_highest_tx_us",
        "rx_received",
        "rx_restart",
        "rx_session_seq",
        "rx_stale",
        "rx_window",
        "srtt",
        "standby",
        "tracker",
        "unacked",
        "up",
        "up_since",
        "wire_factor",
    )

    def __init__(
        self,
        path_id: int,
        *,
        rate_bps: int | None = None,
        metric: int = 0,
        congestion: str = "bbr",
        standby: bool = False,
        download_bps: int | None = None,
        first_seq: int = 0,
        now: float,
    ) -> None:
        self.path_id = path_id
        self.rate_bps = rate_bps
        self.metric = metric
        self.standby = standby
        self.download_bps = download_bps
        # PATH_INFO: what the local portal still owes the peer (sends left, when the
        # next is due); the last info sent (local) or applied (remote), None: none yet.
        self.info_left = 0
        self.info_due = now
        # FEATURES (both portals): sends left on this path, when the next is due.
        self.features_left = 0
        self.features_due = now
        self.peer_info: PathInfo | None = None
        # Pacing (see the module comment).
        # (session_seq, bucket, bucket_seq, packet, enqueue time)
        self.queue: deque[tuple[int, int, int, bytes, float]] = deque()
        self.queued_bytes = 0
        self.next_release = now
        self.hold = 0.0  # seconds bulk DATA waits in the queue (session delay_floor)
        self.cwnd_limited = False
        # Fill PROBEs (padding while the controller finds the path's rate): when the first
        # went out (None: none yet) and the bytes sent.
        self.fill_from: float | None = None
        self.fill_bytes = 0
        self.tracker = DeliveryTracker(now)
        self.cc: CongestionControl = get_congestion_control(
            congestion, rate_hint=rate_bps / 8 if rate_bps else None, now=now
        )
        self.created = now
        self.up = False
        self.up_since: float | None = None
        # Send side.
        self.next_seq = first_seq
        self.last_send_time: float | None = None
        self.datagrams_sent = 0
        self.bytes_sent = 0
        # Receive side (what we report in feedback).
        self.rx_window = ReplayWindow(PATH_REPLAY_WINDOW)
        self.rx_highest = -1
        self.rx_received = 0
        self.rx_floor = 0
        """The first number counted (below it, datagrams are taken, not counted)."""
        self.rx_restart = False
        """Set when the path went down: the next datagram may start a new numbering."""
        self.rx_stale = 0
        self.rx_highest_tx_us = 0
        self.rx_highest_time = now
        self.rx_session_seq = NO_SESSION_SEQ
        self.last_receive_time: float | None = None
        self.datagrams_received = 0
        self.bytes_received = 0
        self.owd: float | None = None
        self.owd_min = WindowedMin(MIN_FILTER_WINDOW)
        self.jitter = 0.0
        # What feedback from the peer taught us.
        self.acked_highest = first_seq - 1
        self.delivered = first_seq
        self.lost = 0
        self.srtt: float | None = None
        self.rttvar: float | None = None
        self.latest_rtt: float | None = None
        self.min_rtt = WindowedMin(MIN_FILTER_WINDOW)
        # Session bookkeeping (timers and flags owned by TunnelSession).
        self.feedback_pending = 0
        self.feedback_due: float | None = None
        self.backdated: set[int] = set()
        """path_seqs of datagrams stamped earlier than sent (no RTT sample from them)."""
        self.reported_lost = 0  # the loss figure (highest + 1 - received) last reported
        self.hello_acked = False
        self.hello_due = now
        # Liveness (owned by TunnelSession). `awaiting`: when the oldest DATA still
        # waiting for an answer was sent (None once something arrived); `unacked`:
        # (path_seq, queue item) of DATA sent and not covered by feedback, resent on the
        # other paths if this one goes down; `probation_until`: a returning path's
        # hold-down end; `down_since`: when it last went down.
        # `degraded_until`: +inf while the path is degraded (lossy or slow), else -inf;
        # `health_*`: its delivered/lost counters at the last health check.
        self.unacked: deque[tuple[int, tuple[int, int, int, bytes, float]]] = deque()
        self.awaiting: float | None = None
        self.down_since: float | None = None
        self.jump_tokens = _INF
        """Bytes sparse packets may still jump a non-empty queue with (the session's
        bucket, refilled at a share of the pacing rate; full at first)."""
        self.jump_at = now
        """When `jump_tokens` was last brought up to date."""
        self.flagged: dict[int, int] = {}
        """Header flags of queued DATA put at the head of the queue, by session seq:
        FLAG_JUMPED (a priority packet) or FLAG_RESENT (a resend answering a NACK)."""
        self.mtu = NO_LIMIT
        """issue 7: the largest session datagram sent on the path (NO_LIMIT: none)."""
        self.pmtu: PathMtu | None = None
        """Its path MTU search (None: not probed)."""
        self.wire_factor = 1.0
        """How much fragmenting inflates a full-size packet on this path (1: none)."""
        """Session seqs of queued resends answering a NACK (sent FLAG_RESENT)."""
        self.probation = 0.0
        """Length of the last hysteresis period (doubles while the path flaps)."""
        self.probation_until = -_INF
        self.degraded_until = -_INF
        self.health_delivered = 0
        self.health_lost = 0
        self.health_adjustments = 0
        """The controller's `adjustments` at the last health check: a loss it answered by
        lowering its estimate (it overfed the link) does not degrade the path."""

    # -- send side ---------------------------------------------------------------------

    def on_datagram_sent(
        self, size: int, now: float, *, tracked: bool = True, fill: bool = False
    ) -> int:
        """Account one datagram of `size` bytes sent now; returns its (unwrapped) path_seq.

        `tracked` False: nothing acknowledges it (a FEEDBACK: answering one would never
        end), so it is not in flight; it still takes a path_seq (the peer counts it).
        `fill`: it fills the path (a fill PROBE), so it is not app-limited."""
        seq = self.next_seq
        self.next_seq = seq + 1
        self.datagrams_sent += 1
        self.bytes_sent += size
        self.last_send_time = now
        if tracked:
            self.tracker.on_sent(seq, size + LINK_OVERHEAD, now, not fill and not self.queue)
        return seq

    def on_feedback(self, entry: FeedbackEntry, now: float, back_queue: float = 0.0) -> None:
        """Apply one FEEDBACK entry about this path (the peer's view of what we sent).

        `back_queue`: seconds the FEEDBACK itself spent queued on its way back (its one-way
        delay over its path's minimum), for the controller: what the path delivered in
        that time is not reported yet, so its window must cover it too (a queue on the
        way back, such as a narrow upload full of a download's acknowledgements, would
        otherwise cap the path)."""
        highest = unwrap32(entry.highest_seq, max(self.acked_highest, 0))
        if highest < self.acked_highest or highest >= self.next_seq or highest < 0:
            return  # stale (reordered) feedback, or acknowledges something never sent
        delivered = unwrap32(entry.received, self.delivered)
        if delivered > highest + 1:
            return  # inconsistent: more received than sent up to `highest`
        rtt: float | None = None
        fresh = highest > self.acked_highest
        backdated = self.backdated
        if fresh and backdated:
            skip = highest in backdated
            for seq in [s for s in backdated if s <= highest]:
                backdated.discard(seq)
        else:
            skip = False
        if fresh and not skip:
            rtt_us = ((int(now * 1_000_000) - entry.echo_tx_time_us) & MASK32) - entry.echo_hold_us
            if 0 < rtt_us < RTT_MAX * 1_000_000:
                rtt = rtt_us / 1_000_000
                self._on_rtt_sample(rtt, now)
        lost_before = self.lost
        if fresh:
            self.acked_highest = highest
        if delivered >= self.delivered:
            self.delivered = delivered
            self.lost = highest + 1 - delivered
        if fresh:
            sample = self.tracker.on_feedback(
                highest,
                max(self.lost - lost_before, 0),
                rtt,
                self.min_rtt.value,
                now,
                back_queue,
                entry.echo_hold_us / 1_000_000,
            )
            self.cc.on_feedback(sample, now)

    def _on_rtt_sample(self, rtt: float, now: float) -> None:
        self.latest_rtt = rtt
        self.min_rtt.update(rtt, now)
        srtt = self.srtt
        if srtt is None or self.rttvar is None:
            self.srtt = rtt
            self.rttvar = rtt / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(srtt - rtt)
            self.srtt = 0.875 * srtt + 0.125 * rtt

    # -- receive side ------------------------------------------------------------------

    def on_datagram_received(
        self, path_seq: int, tx_time_us: int, size: int, owd: float, now: float
    ) -> bool:
        """Account one datagram that arrived now; False if it is a duplicate on this path.

        `owd` is its relative one-way delay in seconds (rx time - tx time, in the session's
        common frame).
        """
        highest = self.rx_highest
        if highest >= 0:
            seq = highest + ((path_seq - highest + _HALF32) & MASK32) - _HALF32
        else:
            # A new path: its numbering starts here (everything before counts as
            # delivered, as the sender counts it).
            seq = path_seq
            highest = self.rx_highest = seq - 1
            self.rx_received = self.rx_floor = seq
        if self.rx_restart:
            self.rx_restart = False
            if seq <= highest:
                # The first datagram after the path went down is not newer: the peer
                # numbers from scratch. Follow it at once.
                self.rx_window.reset()
                highest = self.rx_highest = seq - 1
                self.rx_received = self.rx_floor = seq
        if not self.rx_window.check_and_update(seq):
            if highest - seq < PATH_REPLAY_WINDOW:
                return False  # a duplicate
            self.rx_stale += 1
            if self.rx_stale < RESYNC_AFTER:
                return False  # too old
            # Everything has been "too old" for a while: our highest came from a corrupt
            # datagram far ahead. Follow the peer's real numbering again.
            self.rx_window.reset()
            self.rx_window.update(seq)
            highest = self.rx_highest = seq - 1
        self.rx_stale = 0
        if seq >= self.rx_floor:
            self.rx_received += 1
        self.datagrams_received += 1
        self.bytes_received += size
        self.last_receive_time = now
        if seq > highest:
            self.rx_highest = seq
            self.rx_highest_tx_us = tx_time_us
            self.rx_highest_time = now
        previous = self.owd
        if previous is None:
            self.owd = owd
        else:
            self.owd = previous + _OWD_GAIN * (owd - previous)
            self.jitter += _JITTER_GAIN * (abs(owd - previous) - self.jitter)
        owd_min = self.owd_min
        if owd < owd_min.current or now >= owd_min.renew_at:
            owd_min.update(owd, now)
        return True

    def feedback_entry(self, now: float) -> FeedbackEntry:
        """The FEEDBACK entry reporting what arrived on this path so far."""
        hold_us = int((now - self.rx_highest_time) * 1_000_000)
        return FeedbackEntry(
            self.path_id,
            self.rx_highest & MASK32,
            self.rx_received & MASK32,
            self.rx_highest_tx_us,
            min(max(hold_us, 0), MASK32),
        )

    # -- snapshot ----------------------------------------------------------------------

    def statistics(self) -> PathStatistics:
        """A frozen snapshot of this path."""
        return PathStatistics(
            path_id=self.path_id,
            up=self.up,
            rate_bps=self.rate_bps,
            metric=self.metric,
            datagrams_sent=self.datagrams_sent,
            bytes_sent=self.bytes_sent,
            datagrams_received=self.datagrams_received,
            bytes_received=self.bytes_received,
            delivered=self.delivered,
            lost=self.lost,
            srtt=self.srtt,
            rttvar=self.rttvar,
            min_rtt=self.min_rtt.value,
            latest_rtt=self.latest_rtt,
            owd=self.owd,
            owd_min=self.owd_min.value,
            jitter=self.jitter,
            last_send_time=self.last_send_time,
            last_receive_time=self.last_receive_time,
            congestion=f"{self.cc.name} {self.cc.state}",
            pacing_rate=self.cc.pacing_rate,
            btl_bw=self.cc.btl_bw,
            cwnd=self.cc.cwnd,
            inflight=self.tracker.inflight,
            queued_bytes=self.queued_bytes,
            standby=self.standby,
            state=self.state(),
            mtu=self.mtu if self.mtu < NO_LIMIT else None,
            download_bps=self.download_bps,
            estimate_restarts=self.cc.adjustments,
            reprobes=self.cc.reprobes,
            fill_bytes=self.fill_bytes,
        )

    def state(self, now: float | None = None) -> str:
        """issue 6: "down", "probation", "degraded" or "up" (at `now`, else as last set)."""
        if not self.up:
            return "down"
        if now is None:
            if self.probation_until > -_INF:
                return "probation"
            return "degraded" if self.degraded_until > -_INF else "up"
        if self.probation_until > now:
            return "probation"
        return "degraded" if self.degraded_until > now else "up"
