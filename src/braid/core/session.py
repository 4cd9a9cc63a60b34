# TunnelSession: one end (local or remote portal) of a braid session, sans-I/O.
#
# Theory of operation.
#
#   send_packet(ip)  --classify-->  bucket, session_seq, bucket_seq
#                    --scheduler--> one usable path --encode--> datagrams_to_send()
#   receive_datagram(d) --decode--> session/path checks --path accounting (dedupe, owd)-->
#       DATA:     session_seq duplicate filter --> reorder buffer --> packets_to_deliver()
#       FEEDBACK: RTT, delivered, lost of the paths it reports on (and HELLO acknowledged)
#       PROBE:    immediate FEEDBACK if a reply is requested
#       CONTROL:  HELLO (remote: immediate FEEDBACK), CLOSE, PATH_DOWN
#   handle_timer() --> feedback due, HELLO resend, keepalive PROBE, dead paths, reorder
#                      timeouts, adaptive reorder timeout
#
# Paths. The local portal configures its paths (`add_path`) and sends HELLO on each at
# once and every `hello_interval` until a FEEDBACK arrives on it (again after the path
# goes down, so that a restarted remote portal re-creates the session). The remote portal
# creates a path on the first valid datagram carrying a new path id. A path is *up* from
# its first valid datagram until nothing has arrived on it for `dead_interval`
# (PathDown), and up again on the next valid datagram (PathUp). Keepalive: the local portal sends a PROBE asking for a reply on a path with
# nothing sent for `keepalive_interval`; the remote portal answers (FEEDBACK) and never
# probes itself: the local portal owns the links and the NAT state, its probes and their
# answers keep both ends' liveness fresh, and probes from both ends would only double
# the idle traffic.
#
# Feedback (per path, one entry about that path, sent back on it). DATA arms it: sent
# `feedback_interval` after the first unreported DATA, or at once after `feedback_every`
# datagrams. A PROBE asking for a reply and (at the remote portal) a HELLO are answered at
# once. Other datagrams arm it only when they change the loss figure last reported (a
# late or missing datagram), so idle ends never answer each other's feedback.
#
# Scheduling. The scheduler sees the *usable* paths: the up paths with the lowest metric
# (a higher-metric path is a backup, used only while no lower-metric path is up). If no
# path is up, it sees all paths with the lowest metric: a down path may work again before
# its liveness shows it (e.g. right after start, before the first FEEDBACK), and packets
# sent there would be lost anyway only if every path really is down.
#
# Pacing and queue control. `send_packet` assigns the session and bucket sequence numbers,
# lets the scheduler (the packet's class's, else the session's) pick a path and appends
# the packet to that path's FIFO queue; the pacer releases a path's queue at its
# congestion controller's pacing rate while its inflight is under the controller's cwnd
# (framing and the tx timestamp happen at release). Releases run on every input and in
# `datagrams_to_send`; `get_timer()` includes the next release of every non-blocked path.
# The queues together hold at most `queue_limit` seconds of the usable paths' summed
# estimated rate (bytes): beyond it `writable` is False and `send_packet` refuses (real-time
# classes excepted), so the driver leaves the backlog in the kernel. A path's queue is
# FIFO in session_seq. Control datagrams (FEEDBACK, PROBE, ...) bypass the queue; while it
# holds DATA they are stamped 1 us before the oldest queued DATA was scheduled (and their
# path_seq remembered, so they give no RTT sample): "a path delivered something sent
# after D" then still proves that every packet scheduled before D on it has arrived.
# Strict priority: a packet of a real-time class (priority > 0) goes to the head of its
# path's queue and takes the lowest queued session_seq, each queued DATA moving up one
# (`_jump_queue`), so the path still delivers session_seq in increasing order. (Not when
# a `redundant` scheduler is in use: renumbered copies would not be duplicates.)
# A path that goes down or away hands its queue to the others (`_fail_over`). An up path
# left idle by the scheduler while DATA leaves on others sends a PROBE (no reply) every
# `pass_interval`, so the egress can prove gaps lost without waiting for its keepalive.
#
# Bandwidth on demand. A `standby` path is left out of the usable set until the active
# paths' utilisation (bytes released / (interval x summed estimated rate), measured every
# `bod_interval`, 1.0 while send_packet refuses) passes `bod_upper`; it leaves again when
# the utilisation of the others falls below `bod_lower`.
#
# Reordering. The receiver releases each flow bucket in bucket_seq order (ReorderBuffer).
# A gap is proven lost once every up path has *passed* it, i.e. delivered something sent
# after the first packet held behind the gap (paths are FIFO). A path passes session seq
# S when it delivers DATA with session_seq >= S, or any other datagram (PROBE, FEEDBACK,
# ...) whose tx_time is later than that of a received DATA packet with session_seq >= S
# (the sender stamps in send order), so idle paths prove gaps with their keepalives and
# feedback instead of stalling them. The time-to-seq lookup uses "marks": the
# (tx_time, session_seq) of each DATA that raised the highest session_seq received, a
# list sorted on both. Otherwise a gap is skipped after the adaptive timeout: the spread
# of relative one-way delays between up paths (max smoothed - min windowed-min) x 1.25 plus
# `reorder_jitter_factor` x the largest jitter, clamped to [min, max]; recomputed on
# every timer tick.
#
# Invariants:
# - `receive_datagram` never raises: a datagram is either accepted (path id returned) or
#   counted under exactly one drop reason in `statistics().drops`.
# - Every counter on the wire starts at 0 (session_seq, each bucket_seq, each path_seq),
#   except that a path removed and added again (or re-created at the remote portal) goes
#   on numbering where it left off: path_seq is part of the record's nonce (keys.py).
# - Deadlines are compared as `deadline <= now` with the same expression that computes
#   them, so after `handle_timer(now)`, `get_timer()` is later than `now` (no busy loop).
# - No I/O, no clock, no randomness: `now` is passed in; the driver drains the outputs
#   after every input and re-arms one timer at `get_timer()`.

from __future__ import annotations

import math
import struct
from bisect import bisect_left
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import Enum
from typing import Final, Literal

from braid.core.ackfilter import is_pure_ack, supersedes
from braid.core.ackhold import ACK_HOLD_SHARE, AckHold
from braid.core.classify import (
    TrafficClass,
    clamp_mss,
    ecn_marked,
    flow_bucket,
    is_tcp_data,
    match_class,
    tcp_data_seq,
    waits_for_resends,
)
from braid.core.compact import SETTLE_MAX, Compressor, Decompressor
from braid.core.congestion import CONGESTION_CONTROLS
from braid.core.equalize import BulkFlows, BulkPairs
from braid.core.fec import FecDecoder, FecEncoder, Parity, choose_group_size
from braid.core.fragment import Fragment, Reassembler, split, split_lowers_latency
from braid.core.path import (
    LINK_OVERHEAD,
    NO_LIMIT,
    NO_SESSION_SEQ,
    RESYNC_AFTER,
    PathState,
    PathStatistics,
)
from braid.core.pmtu import PathMtu
from braid.core.predictor import LossModel, default_model, features
from braid.core.reorder import ReorderBuffer, ReorderStatistics
from braid.core.replay import ReplayWindow
from braid.core.retransmit import Gap, NackTracker, RetransmitBuffer
from braid.core.scheduler import SCHEDULERS, Scheduler, get_scheduler
from braid.core.scheduler.earliest_arrival import (
    EarliestArrivalScheduler,
    path_delay,
    queue_delay,
)
from braid.core.scheduler.redundant import RedundantScheduler
from braid.core.wire import (
    DATA_HEADER,
    DATA_HEADER_SIZE,
    DROP_REASONS,
    FEATURE_COMPACT,
    FEATURE_FILL,
    FEATURE_HOLD,
    FEATURE_PACK,
    FEATURE_TRIM,
    FEATURES_VALUE,
    FEEDBACK_ENTRY_SIZE,
    FLAG_COMPACT,
    FLAG_CONTEXT,
    FLAG_HOLD,
    FLAG_JUMPED,
    FLAG_PACKED,
    FLAG_RESENT,
    FLAG_TRIMMED,
    FRAG_HEADER_SIZE,
    HEADER_SIZE,
    MASK32,
    MAX_NACK_ENTRIES,
    MAX_PATH_ID,
    VERSION,
    Buffer,
    ControlFrame,
    ControlKind,
    DataFrame,
    FecFrame,
    FeedbackFrame,
    FragFrame,
    Frame,
    FrameType,
    NackFrame,
    PathInfo,
    ProbeFrame,
    ProtocolError,
    decode_datagram,
    decode_path_info,
    encode_control,
    encode_fec,
    encode_feedback,
    encode_frag,
    encode_nack,
    encode_path_info,
    encode_probe,
    is_hello,
)

__all__ = [
    "Event",
    "PathDown",
    "PathUp",
    "Role",
    "SessionClosed",
    "SessionConfig",
    "SessionStatistics",
    "TunnelSession",
    "is_hello",
]

Role = Literal["local", "remote"]


class _Keep(Enum):
    """Default of `update_path` arguments: keep the current value."""

    KEEP = 0


SESSION_REPLAY_WINDOW: Final = 65536
"""Duplicate window over session_seq, in packets (docs/protocol.md)."""

_INF: Final = math.inf
_HALF32: Final = 1 << 31
_FAST_DATA: Final = frozenset(
    bytes((VERSION, FrameType.DATA, hold | form))
    for hold in (0, FLAG_HOLD)
    for form in (
        0,
        FLAG_COMPACT,
        FLAG_CONTEXT,
        FLAG_COMPACT | FLAG_TRIMMED,
        FLAG_COMPACT | FLAG_TRIMMED | FLAG_PACKED,
    )
)
"""The first 3 bytes of the DATA the receive path decodes without a frame object."""
_FORMS: Final = FLAG_COMPACT | FLAG_CONTEXT
_DATA_PACK: Final = DATA_HEADER.pack
_DATA_UNPACK: Final = DATA_HEADER.unpack_from
_FEEDBACK_SIZE: Final = HEADER_SIZE + 1 + FEEDBACK_ENTRY_SIZE
_MARKS_LIMIT: Final = 4096
_OVERHEAD: Final = LINK_OVERHEAD
"""Bytes a datagram costs on the link beyond its length (the security record's key field
and tag, UDP + IPv4 + Ethernet headers), so that delivery rates and pacing are in link
bytes, like configured link rates."""
_LOSS_BASED_MEMORY: Final = 10.0
"""Seconds a flow early drop signalled counts as loss-based (`delay_floor` leaves it alone):
a CUBIC flow is signalled every few seconds, a BBR flow capped by its window never."""
_BURST: Final = 0.004
"""Seconds of pacing credit a path may accumulate (timer granularity)."""
_QUANTUM: Final = 0.002
"""The pacer releases what is due within this many seconds in one batch: one wake-up of
the driver sends a few datagrams instead of one (a wake-up costs more than a datagram)."""
_ACK_FLOWS: Final = 1024
"""`ack_filter` remembers the queued acknowledgement of at most this many flows (it starts
afresh beyond: an entry outlives its acknowledgement once that is sent)."""
_ACK_SCAN: Final = 64
"""`ack_filter` looks for a flow's queued acknowledgement among the last this many packets
of its path's queue (where the newest packet of a queue is)."""
_HEALTH_MIN_SAMPLES: Final = 20
"""Datagrams a health check needs before it judges a path (a quarter for a degraded one:
it carries only probes)."""
_UNACKED_LIMIT: Final = 8192
"""DATA remembered per path for a failover resend (sent, not yet covered by feedback)."""
_FAILOVER_MARGIN: Final = 0.01
"""Seconds added to the egress's estimated patience for a failover copy (its reorder
timeout is estimated from this portal's own; see TunnelSession._fail_over)."""
_FLAP_WINDOW: Final = 10.0
"""A path that goes down within this many seconds of coming back is flapping."""
_FLAP_HOLD_MAX: Final = 16
"""A flapping path's hold-down doubles up to this many times return_holddown."""
_QUEUE_FLOOR: Final = 64 * 1024
"""The queue limit in bytes is never below this (a few packets per path)."""
_FqEntry = tuple[bytes, Scheduler, RetransmitBuffer | None, bool, bool]
"""`fair_queue`: a waiting packet, its scheduler, resend buffer, FEC protection and whether
it is a pure acknowledgement."""
_FQ_MARGIN: Final = 0.005
"""`fair_queue`: seconds of the paths' summed rate queued on the paths beyond the spread."""
_FQ_FLOOR: Final = 4 * 1500
"""`fair_queue`: bytes the paths may always hold queued."""
_FQ_QUANTUM: Final = 1514
"""`fair_queue`: bytes a flow may send per turn (deficit round robin)."""
_SPARSE_SHARE: Final = 0.1
"""`sparse_priority`: the share of a path's pacing rate that sparse packets may jump its
non-empty queue with. Each jump delays what is queued behind it, which the scheduler did
not count when it placed it; unbounded, a new flow at a third of a path's rate put the
path tens of ms behind the others, past the egress's reorder timeout."""
_SPARSE_BURST: Final = 0.05
"""`sparse_priority`: seconds of that share a path may jump at once (the bucket's depth)."""
_SPARSE_BURST_MIN: Final = 1514
"""`sparse_priority`: ... and at least this many bytes (a full-size packet)."""
_FILL_SIZE: Final = 1200
"""`probe_rates`: a fill PROBE's datagram (less than any path's MTU: no MTU search first)."""
_FILL_FOR: Final = 3.0
"""`probe_rates`: seconds a path may be filled at most (its startup usually ends sooner)..."""
_FILL_BUDGET: Final = 16 * 1024 * 1024
"""...and bytes (a link whose startup would not end: a LAN far faster than the portal)."""
_FILL_RATE_MAX: Final = 12_500_000.0
"""`probe_rates`: bytes/s (100 Mbit/s) fill PROBEs pace at most. Over an unshaped veth
pair (tests/runtime/test_daemon.py) startup's rate outgrew what the portal could send,
its window (2.885 x that rate x 25 ms) went out in bursts of thousands of datagrams: 17-18
MB on one path, and the test's exchange through the tunnel failed once. Beyond this a
link's rate is left to the flows' probing (not measured: the lab's links are 40 Mbit/s at
most)."""
_EARLY_QUIET_MAX: Final = 60.0
"""Seconds after a path went down during which `early_drop` stays off while it is down
(queue control by the limit alone). A cut link usually returns within this, and an inner
CUBIC flow must meanwhile keep the window it will need on all the links (measured, one
flow over 20 + 40 Mbit/s, the 40 cut for 7 s: early drop on through the cut, never back
to 90 % within 7 s of the return; quiet, 0.5 s in 5 runs of 6)."""
_EARLY_QUIET_AFTER: Final = 3.0
"""Seconds early drop stays off once a returned path carries DATA again: the flows grow
back into the capacity while the paths' estimates and queues settle."""
_INFO_REPEAT: Final = 3
"""PATH_INFO is sent this many times (hello_interval apart) after a path's change."""
_INFLIGHT_EXPIRY: Final = 1.0
"""Datagrams without feedback for max(this, 4 x srtt) stop counting as in flight."""
_GAP_CHECK: Final = 0.002
"""issue 7: open gaps are looked at (loss predictor, timeout rule) this often."""
_GAP_SCAN: Final = 256
"""At most this many open gaps are looked at per check (the oldest)."""
_MISSING_MAX: Final = 512
"""A jump in session_seq registers at most this many missing numbers (the newest)."""
_RESEND_SHARE: Final = 0.1
_RESEND_BURST: Final = 64 * 1024
"""Resends are paid from a budget that grows by 10 % of the bytes sent: a burst of
mistaken NACKs cannot swamp the paths (the rest is answered gone). At most `queue_limit`
of the usable paths' rate is banked, and at least this: a cut link swallows about that
much before its silence timeout (500 datagrams over 20 + 40 Mbit/s in the lab), and with
64 KiB most of it was answered gone, so the flow saw the hole and resent it itself."""
_SPLIT_MIN: Final = 576
"""Packets below this are never split across paths (`split_below`)."""
_SYMBOL: Final = struct.Struct("!HI")
"""FEC symbol prefix: bucket, bucket_seq (then the inner packet)."""
FEC_MODES: Final = ("off", "auto", "on")
NACK_MODES: Final = ("off", "auto", "on")
NACK_AUTO_ON: Final = 0.005
"""`nack = "auto"`: a side turns recovery on after NACK_AUTO_ON_INTERVALS health intervals
in a row in which its paths lost at least this fraction of the datagrams (and at least
NACK_AUTO_MIN_LOST; a capacity drop loses for one or two)..."""
NACK_AUTO_ON_INTERVALS: Final = 3
NACK_AUTO_MIN_LOST: Final = 2
NACK_AUTO_OFF: Final = 0.001
"""...and off after NACK_AUTO_OFF_INTERVALS in a row under this one."""
NACK_AUTO_OFF_INTERVALS: Final = 10
NACK_AUTO_START_OFF_INTERVALS: Final = 3
"""A session starts with recovery on because it knows nothing of its paths yet: that
start goes off after this many clean intervals in a row, unless the paths first lose for
NACK_AUTO_ON_INTERVALS in a row (what would have turned it on), after which it is on
for a measured reason and NACK_AUTO_OFF_INTERVALS apply. (A flow's slow start overflows
a link for an interval or two; that is no reason to keep resending.)"""
NACK_AUTO_MIN_SAMPLES: Final = 50
"""An interval with fewer datagrams on the paths counts neither way."""
EQUALIZE_MODES: Final = ("bulk", "tcp", "ack", "all", "off")
_EQUALIZE_REFRESH: Final = 0.05
"""Seconds between two computations of the egress's equalization delay (`equalize`)."""
_EQ_EXEMPT: Final = -_INF
"""The tag of a packet `equalize` does not hold (told apart on arrival, not again)."""
_EQUALIZE_MEMORY: Final = 30.0
"""Seconds a path that left the usable set (down, degraded, standby again) still counts
for the equalization delay: a flow's round trip must not grow when it returns (BBR keeps
its minimum RTT for 10 s and would collapse to a fraction of its rate)."""
_EQUALIZE_MIN: Final = 0.002
"""Paths whose one-way delays differ by less than this are taken as equal (no holding)."""
_EQUALIZE_LIMIT: Final = 8192
"""Packets the egress's delay line holds at most; beyond, the oldest leave early."""
_EQUALIZE_EARLY: Final = 0.0005
"""A held packet leaves this much before its time (timers fire late, not early)."""
_EQ_ORDER_SWEEP: Final = 4096
"""equalize "bulk": the egress forgets flows whose held packets are gone past this many."""
_EQ_ACKED_LIMIT: Final = 4096
_EQ_ACKED_FORGET: Final = 30.0
"""equalize "bulk": a flow given "ack" for its remembered pair (`BulkPairs`) keeps it
while its packets come less than this many seconds apart (bounded: this many flows)."""
_FEC_CLEAN_GROUP: Final = 16
"""fec = "on" over links that lose nothing (yet): one parity per this many packets."""
_TRACE_LIMIT: Final = 200_000
_TRACE_PER_GAP: Final = 8


@dataclass(frozen=True, slots=True)
class PathUp:
    """A path carries traffic from the peer (again)."""

    path_id: int


@dataclass(frozen=True, slots=True)
class PathDown:
    """A path stopped working: `reason` is "timeout", "peer" or "removed"."""

    path_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class SessionClosed:
    """The session ended: `reason` is "local", "peer" or "idle"."""

    reason: str


Event = PathUp | PathDown | SessionClosed


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """Session parameters (durations in seconds); invalid values raise ValueError."""

    scheduler: str = "earliest-arrival"
    congestion_control: str = "bbr"
    queue_limit: float = 0.1
    """Seconds of the usable paths' summed rate the send queues may hold."""
    early_drop: float = 0.7
    """Active queue management: once the send queues hold this fraction of
    `queue_limit`, one packet of a flow holding at least its share of them is dropped (or
    ECN-marked, when it is ECN-capable), then one every `early_drop_interval` /
    sqrt(count) while they stay there. A TCP flow backs off once and keeps the links
    full, instead of losing a burst when the queue is full and the TUN overflows. Quiet
    while a path is down and just after it returns (`early_drop_active`). 0: off (tail
    drop at the limit only)."""
    early_drop_interval: float = 0.2
    """Seconds between two early drops (a few inner round trips: a TCP flow backs off once
    per round trip), shrinking while the queue stays above the threshold (CoDel's control
    law)."""
    delay_cutoff: float = 0.2
    """earliest-arrival: a path slower than the fastest by more than this is overflow only."""
    delay_floor: float = 0.0
    """earliest-arrival over paths of unequal delay: bulk DATA on a path faster than the
    rest waits in its queue until its round trip would be this factor times the paths'
    rate-weighted mean one-way delay (0: off). An inner BBR flow sizes its window by its
    minimum RTT; without a floor that is the fastest path's, too small to fill the
    others (docs/design.md, "Delay equalization": `equalize` does it at the egress)."""
    equalize: str = "bulk"
    """Egress delay equalization over paths of unequal delay: every inner packet it applies
    to ("bulk", the default: the TCP data of flows the sender's ingress saw in BBR's
    PROBE_RTT, flagged *hold*; "tcp": TCP segments with data or SYN/FIN/RST, not pure
    acknowledgements; "all": every packet; "off": none) leaves the egress no earlier than
    it would have over the slowest usable path (within `delay_cutoff` of the fastest),
    whichever path carried it. A TCP flow's minimum round trip then covers every path: BBR
    sizes its window by it and otherwise cannot fill the slower paths. "tcp" and "all"
    make a short TCP exchange (a web request) wait for the slowest path each way; "bulk"
    never holds one. "ack" gives every TCP flow the round trip "tcp" gives it by holding,
    at this portal's ingress, the acknowledgements (and SYN-ACKs) of the segments its
    egress received early, instead of the segments: the data is delivered at once, and
    a short exchange pays the slowest path's delay in its handshake and in each round
    trip its sender waits for acknowledgements (braid.core.ackhold; docs/design.md,
    "Delay equalization"). A traffic class may set its own ("ack" or "off",
    `TrafficClass.equalize`) for its TCP connections."""
    equalize_remember: float = 600.0
    """equalize "bulk": once a flow between two hosts is held for good (its sender is in
    BBR's PROBE_RTT, 10 s in), the egress remembers the pair (sender, receiver) for this
    many seconds since such a flow was last seen, and gives every new TCP connection
    between them "ack" from its first packet, so that it does not spend 10 s on the
    fastest path's round trip (braid.core.equalize.BulkPairs; 0: off)."""
    compress_headers: bool = True
    """Inner header compression: toward a peer that takes it (FEATURES), a TCP or UDP
    packet travels without the header fields its flow repeats (20 bytes of IPv4, 42 of
    IPv6; braid.core.compact). Either way this portal takes compressed packets."""
    ack_filter: bool = True
    """While a flow's newest packet waiting in a path queue is a pure TCP acknowledgement,
    a newer one that says everything it says takes its place instead of queueing behind it
    (braid.core.ackfilter): a narrow upload carries the newest acknowledgement, not a
    backlog of stale ones that holds a download back. Never with FEC (its parities cover
    the bytes queued)."""
    clamp_mss: int = 0
    """TCP SYNs (and SYN-ACKs) entering the tunnel carry an MSS of at most this over IPv4
    and 20 less over IPv6 (0: left alone). The portal sets it to its TUN MTU - 40, so a
    host on a 1500-byte LAN sends segments that fit the tunnel from its first window (not
    1448-byte ones the kernel refuses with ICMP, costing a round trip and the window's
    retransmission; nothing at all where ICMP is filtered)."""
    bod_upper: float = 0.8
    bod_lower: float = 0.5
    bod_interval: float = 1.0
    redundant_copies: int = 2
    pass_interval: float = 0.02
    """An idle up path sends a PROBE this often while DATA flows on others (gap proofs)."""
    classes: tuple[TrafficClass, ...] = ()
    keepalive_interval: float = 0.25
    hello_interval: float = 0.25
    dead_interval: float = 1.0
    silence_timeout_min: float = 0.3
    """A path that got no answer this long (at least; 2 x srtt + 4 x rttvar + 2 x
    feedback_interval when larger, at most dead_interval) to DATA it sent is down at once
    (fast failover under traffic; idle paths keep dead_interval). Equal to dead_interval:
    off."""
    sparse_priority: bool = True
    """With the `earliest-arrival` scheduler (the others keep FIFO queues for comparison),
    a packet of a flow (bucket) with nothing queued in the session goes to the head of the
    path where it arrives first, like fq_codel's new flows: pings, DNS, keystrokes and
    calls do not wait behind a bulk transfer's queue (off while a `redundant` scheduler
    is in use)."""
    probe_rates: bool = True
    """A path without a rate hint finds its rate in its controller's first startup, which
    needs the path full: the flows may never fill it (a path whose estimate is 1 Mbit/s
    gets little of their traffic, and a BBR flow asks only for what it measured). While
    it is finding its rate (`finding_rate`) and carries DATA for the session (a usable
    path), the pacer fills what its queue leaves with fill PROBEs, padding the peer
    answers with feedback (FEATURES bit 4), at most `_FILL_FOR` seconds: a few round trips
    and a few megabytes per link at the start. Off, the portal does not say bit 4 either,
    so its peer fills nothing toward it: one switch at a site with metered links turns the
    probing off both ways."""
    fair_queue: bool = False
    """With the `earliest-arrival` scheduler: the session's backlog beyond what the paths
    need queued (each path the delay spread's worth of its rate, plus `_FQ_MARGIN`) waits
    in one queue per flow (bucket), served in turn by deficit round robin, instead of in
    the paths' FIFO queues: a fetch next to a bulk download gets an equal share of the
    paths, not what the download leaves. Sparse and real-time packets still go first."""
    degraded_loss: float = 0.25
    """A path losing more than this fraction of what it sends (measured each
    `health_interval` over at least 20 datagrams) is *degraded*: it carries no DATA while
    another path can, and is probed; it recovers below half the fraction. 1.0: never."""
    degraded_rtt: float = 1.0
    """A path whose smoothed RTT exceeds the best up path's by more than this many seconds
    is degraded too (recovering below half the excess)."""
    health_interval: float = 1.0
    return_holddown: float = 0.2
    """A path that comes back after being down carries DATA only after this long up (it
    doubles, up to 16 x, while the path flaps: back down within 10 s of returning). Short:
    what a path that dies again had in flight is resent on the others anyway."""
    feedback_interval: float = 0.025
    feedback_every: int = 32
    """A path's receiver answers DATA `feedback_interval` after the first unreported one,
    or at once after this many datagrams. 32 (16 until 2026-11-30): at 1500 datagrams a
    second a path's feedback comes every 21 ms, still inside the controller's 25 ms
    allowance for it, and takes half as much of a narrow way back (a 0.5 Mbit/s upload
    carrying a download's acknowledgements: 33.2 -> 35.9 Mbit/s)."""
    reorder_timeout_min: float = 0.005
    reorder_timeout_max: float = 0.3
    reorder_jitter_factor: float = 4.0
    reorder_limit_packets: int = 4096
    reorder_limit_bytes: int = 8 * 1024 * 1024
    max_queued_datagrams: int = 4096
    idle_timeout: float | None = None
    """Close the session after this long with nothing received (None: never)."""
    nack: bool | str = "auto"
    """issue 7: the egress NACKs packets it finds lost and holds their flow (within the
    reorder timeout, which grows by the fastest path's RTT) for the resend; the sender
    keeps what it sent for `retransmit_age` and resends a NACKed packet at the head of
    the fastest path, at most twice (a class can switch it off, `TrafficClass.nack`).
    "on" (or True), "off" (or False), or "auto": on at first, then each side keeps it on
    only while its paths lose datagrams (see NACK_AUTO_ON), so clean links soon pay
    nothing for it (3 clean seconds at the start, 10 once loss turned it on)."""
    loss_predictor: bool = True
    """issue 7: also NACK a gap as soon as the loss model says it is a loss (before every
    live path has passed it, or the delay-spread timeout, which NACK in any case). Does
    nothing while NACK recovery is off (with "auto": over clean paths)."""
    loss_model: LossModel | None = None
    """The predictor's model (None: the one shipped with the package)."""
    retransmit_packets: int = 4096
    retransmit_age: float = 0.5
    gap_trace: bool = False
    """Record (features, loss) samples of the egress's gaps for `braid train`."""
    fec: str = "off"
    """issue 7: XOR parity over groups of k packets (one loss per group rebuilt at the
    egress without a round trip): "auto" sizes k from the loss the paths report (no
    parity below 0.2 % loss), "on" likewise but one parity per 16 packets on clean links,
    "off" none (a class can switch it on, `TrafficClass.fec`)."""
    max_datagram: int = 1426
    """issue 7: the largest session datagram a path is asked to carry (the inner MTU +
    the 26-byte DATA header); each path's MTU is probed up to it, and an inner packet
    too large for its path travels in fragments."""
    split_below: int = 0
    """issue 7: bit/s; while every usable path is estimated slower than this, an inner
    packet of 576 bytes or more is split in two FRAG pieces sent on the two paths where
    they arrive first (shares by rate), when that finishes sooner than the whole packet
    on the best path. 0: never."""
    fec_max_delay: float = 0.05
    """An open FEC group of two or more packets is closed (its parity sent) this long
    after its first packet."""

    @property
    def nack_mode(self) -> str:
        """`nack` as one of NACK_MODES (True is "on", False "off")."""
        nack = self.nack
        return "on" if nack is True else "off" if nack is False else str(nack)

    def __post_init__(self) -> None:
        if self.scheduler not in SCHEDULERS:
            raise ValueError(
                f"scheduler: unknown scheduler {self.scheduler!r}; valid: {', '.join(SCHEDULERS)}"
            )
        if self.congestion_control not in CONGESTION_CONTROLS:
            raise ValueError(
                f"congestion_control: unknown {self.congestion_control!r}; "
                f"valid: {', '.join(CONGESTION_CONTROLS)}"
            )
        for cls in self.classes:
            if cls.scheduler is not None and cls.scheduler not in SCHEDULERS:
                raise ValueError(
                    f"class {cls.name}: unknown scheduler {cls.scheduler!r}; "
                    f"valid: {', '.join(SCHEDULERS)}"
                )
        if not 0 < self.bod_lower < self.bod_upper:
            raise ValueError(
                f"bod_lower: must be above 0 and below bod_upper, got {self.bod_lower!r}"
            )
        for name in (
            "queue_limit",
            "early_drop_interval",
            "delay_cutoff",
            "pass_interval",
            "bod_interval",
            "keepalive_interval",
            "hello_interval",
            "dead_interval",
            "silence_timeout_min",
            "return_holddown",
            "health_interval",
            "degraded_rtt",
            "feedback_interval",
            "reorder_timeout_max",
            "retransmit_age",
            "fec_max_delay",
        ):
            value = getattr(self, name)
            if not value > 0 or value == _INF:
                raise ValueError(f"{name}: must be a positive number of seconds, got {value!r}")
        if not 0 <= self.reorder_timeout_min <= self.reorder_timeout_max:
            raise ValueError(
                "reorder_timeout_min: must be between 0 and reorder_timeout_max, "
                f"got {self.reorder_timeout_min!r}"
            )
        if not 0 <= self.early_drop < 1:
            raise ValueError(
                f"early_drop: must be a fraction of queue_limit from 0 (off) to below 1, "
                f"got {self.early_drop!r}"
            )
        if not 0 <= self.delay_floor <= 4:
            raise ValueError(f"delay_floor: must be between 0 and 4, got {self.delay_floor!r}")
        if not self.reorder_jitter_factor >= 0:
            raise ValueError(
                f"reorder_jitter_factor: must be >= 0, got {self.reorder_jitter_factor!r}"
            )
        for name in (
            "feedback_every",
            "reorder_limit_packets",
            "reorder_limit_bytes",
            "max_queued_datagrams",
            "redundant_copies",
            "retransmit_packets",
            "max_datagram",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: must be a positive integer, got {value!r}")
        if not isinstance(self.split_below, int) or self.split_below < 0:
            raise ValueError(
                f"split_below: must be a rate in bit/s >= 0 (0: off), got {self.split_below!r}"
            )
        if not 0 <= self.clamp_mss <= 0xFFFF:
            raise ValueError(
                f"clamp_mss: must be 0 (off) or an MSS up to 65535, got {self.clamp_mss}"
            )
        if self.equalize not in EQUALIZE_MODES:
            raise ValueError(
                f"equalize: must be one of {', '.join(EQUALIZE_MODES)}, got {self.equalize!r}"
            )
        if not 0.0 <= self.equalize_remember <= 86_400.0:
            raise ValueError(
                "equalize_remember: must be seconds, 0..86400 (0: off), got "
                f"{self.equalize_remember!r}"
            )
        if self.nack_mode not in NACK_MODES:
            raise ValueError(
                f"nack: must be one of {', '.join(NACK_MODES)} (or true/false), got {self.nack!r}"
            )
        if self.fec not in FEC_MODES:
            raise ValueError(f"fec: must be one of {', '.join(FEC_MODES)}, got {self.fec!r}")
        if self.idle_timeout is not None and not self.idle_timeout > 0:
            raise ValueError(
                f"idle_timeout: must be a positive number of seconds or None, "
                f"got {self.idle_timeout!r}"
            )


@dataclass(frozen=True, slots=True)
class SessionStatistics:
    """A snapshot of a session (what the API, CLI and dashboard read)."""

    session_id: int
    role: Role
    closed: bool
    scheduler: str
    reorder_timeout: float
    packets_sent: int
    bytes_sent: int
    packets_received: int
    packets_delivered: int
    bytes_delivered: int
    send_no_path: int
    send_queue_full: int
    send_rejected: int
    queued_bytes: int
    queue_limit_bytes: int
    queue_dropped: int
    """Inner packets dropped from the queue of a path that went down or was removed
    while no other path was up (otherwise the failover sends them on the others)."""
    early_dropped: int
    """Inner packets dropped by active queue management (`early_drop`)."""
    early_marked: int
    """ECN-capable inner packets marked CE instead."""
    early_drop_active: bool
    """Early drop is configured and not quiet (no path down or just returned)."""
    failover_resent: int
    """Packets re-sent on other paths because the path they were on went down (queued
    there, or sent and not yet covered by feedback)."""
    failover_skipped: int
    """Packets a path that went down had sent and not seen covered, left out of the
    failover because NACK recovery had already resent them on another path."""
    failover_late: int
    """Packets a path that went down had sent and not seen covered, left out of the
    failover because no other path could bring them before the egress gives up waiting
    for them (its reorder timeout): sent, they would only arrive late."""
    path_info_sent: int
    """Local portal: PATH_INFO frames sent (a path's metric, standby flag, download rate)."""
    path_info_applied: int
    """Remote portal: PATH_INFO changes applied to this session's paths."""
    rebalanced: int
    """Queued packets moved to another path when a path joined (returned, or a standby
    link was called in): see `_rebalance`."""
    nack_active: bool
    """issue 7 (egress): whether it NACKs lost packets now (`nack = "auto"`: its paths
    lose datagrams)."""
    nack_sent: int
    """issue 7 (egress): missing packets NACKed (each try counted)."""
    gaps_recovered: int
    """Gaps filled by a resend after a NACK."""
    gaps_abandoned: int
    """Gaps given up (deadline, or the sender no longer had the packet)."""
    nack_received: int
    """issue 7 (sender): packets the peer NACKed."""
    retransmitted: int
    """Packets resent for a NACK."""
    retransmit_gone: int
    """NACKed packets the sender no longer had (or had resent twice)."""
    fec_group: int
    """issue 7 (sender): the FEC group size in use (0: off)."""
    fec_parities: int
    """FEC parities sent."""
    fec_recovered: int
    """(egress) packets rebuilt from a parity."""
    fragmented: int
    """issue 7: inner packets sent in fragments (too large for their path's MTU)."""
    split: int
    """Inner packets split across two slow paths (`split_below`)."""
    reassembled: int
    """(egress) inner packets rebuilt from fragments."""
    equalized: int
    """(egress) inner packets held to the slowest usable path's delay (`equalize`)."""
    equalize_delay: float
    """(egress) how much later than over the fastest usable path a held packet leaves at
    most, in seconds: the paths' one-way delay spread (0 with one path or `equalize` off);
    with `equalize = "ack"` how much an acknowledgement waits at most, half the spread
    (`braid.core.ackhold.ACK_HOLD_SHARE`)."""
    equalize_overflow: int
    """(egress) held packets released early because the delay line was full; with
    `equalize = "ack"` (ingress) also acknowledgements sent at once, due later, because
    `braid.core.ackhold.LINE_LIMIT` were held."""
    equalize_trials: int
    """(ingress, `equalize = "bulk"`) pauses after a bulk run that marked a TCP flow."""
    equalize_flows: int
    """(ingress, "bulk") TCP flows marked now for the egress to hold (on trial, ahead of
    their first PROBE_RTT, or held)."""
    equalize_ahead: int
    """(ingress, "bulk") TCP flows marked ahead of their first PROBE_RTT (they left the
    paths partly unused; `braid.core.equalize.ANTICIPATE_AT`)."""
    equalize_ends: dict[str, int]
    """(ingress, "bulk") trials (and windows ahead) that ended without holding their flow,
    by reason (`braid.core.equalize.END_REASONS`)."""
    equalize_pairs: int
    """(egress, "bulk") pairs of hosts remembered now, between which a flow was held for
    good: their new connections get "ack" from the first packet (`equalize_remember`)."""
    equalize_paired: int
    """(egress, "bulk") TCP flows given "ack" so far because their pair was remembered."""
    mss_clamped: int
    """(ingress, `clamp_mss`) TCP SYNs whose MSS option was lowered to fit the tunnel."""
    acks_filtered: int
    """(ingress, `ack_filter`) pure TCP acknowledgements that took the place of an older
    one of their flow still queued (not sent on their own)."""
    sparse_jumps: int
    """(ingress, `sparse_priority`) packets of sparse flows put at the head of a path's
    non-empty queue."""
    sparse_queued: int
    """(ingress, `sparse_priority`) packets of sparse flows queued at the tail instead: the
    path they would have jumped had used its share (`_SPARSE_SHARE` of its rate)."""
    fair_waiting: int
    """(ingress, `fair_queue`) bytes waiting in the flows' own queues now (part of
    `queued_bytes`)."""
    fair_flows: int
    """(ingress, `fair_queue`) flows with packets waiting there now."""
    peer_features: int | None
    """The peer's FEATURES bit mask (bit 0: its egress holds DATA flagged *hold*); None:
    none received (not yet, or a portal older than FEATURES: then nothing is marked)."""
    compacted: int
    """(ingress, `compress_headers`) inner packets sent compact (without the header fields
    their flow repeats)."""
    compact_saved: int
    """Bytes those packets saved on the wire."""
    compact_contexts: int
    """Header contexts the ingress keeps (a TCP or UDP flow each)."""
    expanded: int
    """(egress) compact packets rebuilt."""
    bod_active: bool
    datagrams_sent: int
    datagrams_received: int
    drops: dict[str, int]
    paths: tuple[PathStatistics, ...]
    reorder: ReorderStatistics


class TunnelSession:
    """One end of a braid session: feed it inputs with `now`, drain its outputs."""

    def __init__(
        self,
        config: SessionConfig | None = None,
        *,
        role: Role,
        session_id: int,
        now: float,
    ) -> None:
        if role not in ("local", "remote"):
            raise ValueError(f"role: must be 'local' or 'remote', got {role!r}")
        if not 0 <= session_id <= MASK32:
            raise ValueError(f"session_id: must be a 32-bit unsigned integer, got {session_id}")
        self.config = config = config if config is not None else SessionConfig()
        self.role: Role = role
        self.session_id = session_id
        self._local = role == "local"
        self._scheduler: Scheduler = self._make_scheduler(config.scheduler)
        self._classes = config.classes
        self._class_schedulers: tuple[Scheduler | None, ...] = tuple(
            self._make_scheduler(c.scheduler) if c.scheduler is not None else None
            for c in config.classes
        )
        # Real-time packets jump path queues (renumbering them) unless some scheduler sends
        # copies: a renumbered copy would no longer be a duplicate of the other.
        self._can_jump = not any(
            isinstance(s, RedundantScheduler) for s in (self._scheduler, *self._class_schedulers)
        )
        self._sparse = (
            config.sparse_priority
            and self._can_jump
            and isinstance(self._scheduler, EarliestArrivalScheduler)
        )
        self._queued_bytes = 0
        self._backlog: dict[int, int] = {}  # bucket -> DATA queued (sparse_priority)
        # fair_queue: bucket -> packets waiting for a path (with what dispatch needs), the
        # buckets in turn, their deficits, the bytes waiting, and what the paths may hold.
        self._fair = config.fair_queue and isinstance(self._scheduler, EarliestArrivalScheduler)
        self._fq: dict[int, deque[_FqEntry]] = {}
        self._fq_turns: deque[int] = deque()
        self._fq_deficit: dict[int, int] = {}
        self._fq_bytes = 0
        self._fq_target = _FQ_FLOOR
        self._fq_pumping = False
        self._last_data_time = -_INF
        self._pass_interval = config.pass_interval
        self._queue_limit = _QUEUE_FLOOR
        self._queue_dropped = 0
        self._early_at = 0  # bytes queued from which `early_drop` signals (0: off)
        self._carried_data = False  # (issue 7) once True, every up path probes its MTU
        self._early_next = -_INF
        self._early_quiet_until = -_INF  # early drop off until then (a path went down)
        self._early_count = 0
        self._early_dropped = 0
        self._early_marked = 0
        # bucket -> when early drop last signalled it: a loss-based flow (it fills the
        # queues), which `delay_floor` does not hold for `_LOSS_BASED_MEMORY` seconds.
        self._signalled: dict[int, float] = {}
        self._failover_resent = 0
        self._failover_skipped = 0
        self._failover_late = 0
        self._path_info_sent = 0
        self._path_info_applied = 0
        self._rebalanced = 0
        self._bod_active = False
        self._bod_due = now + config.bod_interval
        self._health_due = now + config.health_interval
        self._degraded_count = 0
        self._bod_sent = 0  # bytes released on non-standby paths since the last check
        self._bod_full = 0  # send_queue_full at the last check
        # Per-packet settings, read from the (frozen) config once.
        self._max_queued = config.max_queued_datagrams
        self._feedback_every = config.feedback_every
        self._feedback_interval = config.feedback_interval
        self._paths: dict[int, PathState] = {}
        self._usable: tuple[PathState, ...] = ()
        self._reorder = ReorderBuffer(
            timeout=config.reorder_timeout_max,
            limit_packets=config.reorder_limit_packets,
            limit_bytes=config.reorder_limit_bytes,
            tagged=config.equalize != "off",
        )
        self._replay = ReplayWindow(SESSION_REPLAY_WINDOW)
        # issue 7: NACK retransmission (sender buffer, egress gap list) and loss predictor.
        mode = self._nack_mode = config.nack_mode
        # "auto" starts on (a lossy link is served from its first packet) and goes off
        # once the paths prove clean.
        on = mode != "off"
        self._rtx = (
            RetransmitBuffer(config.retransmit_packets, config.retransmit_age) if on else None
        )
        self._class_nack = tuple(c.nack is not False for c in config.classes)
        self._nack = (
            NackTracker(deadline=config.reorder_timeout_max) if on or config.gap_trace else None
        )
        self._send_nacks = on
        # "auto": consecutive health intervals for (> 0) or against (< 0) a switch, of the
        # sender's resend buffer (the loss its FEEDBACK reports) and of the egress's NACKs
        # (the loss it sees arrive); path -> (rx_highest, rx_received) at the last check.
        self._auto_tx = 0
        self._auto_rx = 0
        # "auto" at the start: lossy intervals in a row of each switch (-1: no longer
        # the start, NACK_AUTO_START_OFF_INTERVALS no longer applies).
        self._start_tx = self._start_rx = 0 if mode == "auto" else -1
        self._rx_marks: dict[int, tuple[int, int]] = {}
        self._gaps_recovered = 0  # of trackers dropped when "auto" turned NACKs off
        self._gaps_abandoned = 0
        self._model = (config.loss_model or default_model()) if config.loss_predictor else None
        self._nack_after = config.reorder_timeout_min
        # delay_floor applies to earliest-arrival alone (the others ignore delays).
        self._delay_floor = (
            config.delay_floor if isinstance(self._scheduler, EarliestArrivalScheduler) else 0.0
        )
        self._gap_due = _INF
        self._gap_loss = 0.0  # EWMA of "a resolved gap was a loss"
        self._gap_interval = 0.0  # longest datagram interval of a live path (egress)
        self._nack_rtt: float | None = None  # NACK -> resend arrival, smoothed (egress)
        self._interval_at = now
        self._interval_counts: dict[int, int] = {}
        self._trace: list[tuple[list[float], int]] | None = [] if config.gap_trace else None
        self._live_paths: tuple[PathState, ...] = ()
        # issue 7: FEC (sender encoder; the egress decoder starts with the first parity).
        self._fec_protect = config.fec != "off"
        self._class_fec = tuple(
            self._fec_protect if c.fec is None else c.fec for c in config.classes
        )
        self._fec_mode = config.fec if config.fec != "off" else "on"
        self._fec = (
            FecEncoder(_FEC_CLEAN_GROUP if self._fec_mode == "on" else 0)
            if self._fec_protect or any(self._class_fec)
            else None
        )
        self._fec_due = _INF
        self._fec_decoder: FecDecoder | None = None
        self._fragmented = 0
        self._split = 0
        self._split_below = config.split_below / 8  # bytes/s (0: off)
        self._reassembler: Reassembler | None = None
        self._send_loss = 0.0
        self._nack_sent = 0
        self._rtx_tokens = float(_RESEND_BURST)
        self._rtx_burst = _RESEND_BURST
        """The resend budget's bank: `queue_limit` of the usable paths' rate, at least
        `_RESEND_BURST` (a cut link's losses fit; see `_RESEND_BURST`)."""
        self._retransmitted = 0
        self._nack_received = 0
        self._retransmit_gone = 0
        self._rx_session_seq = -1  # highest unwrapped session_seq received (first is 0)
        self._rx_nack_ref = -1  # highest session_seq of in-order (progress) DATA (NACK gaps)
        self._rx_tx_ref = 0
        self._rx_stale = 0
        # Marks: (unwrapped tx time, session seq) of each DATA that raised _rx_session_seq.
        self._marks_tx: list[int] = []
        self._marks_seq: list[int] = []
        self._tx_session_seq = 0
        self._tx_bucket_seqs: dict[int, int] = {}  # only the buckets in use (memory)
        self._owd_base_us: int | None = None
        # Egress delay equalization (`equalize`): released packets waiting for their time.
        self._eq_mode = config.equalize
        # (time, session seq, packet, bucket)
        self._eq_line: deque[tuple[float, int, bytes, int]] = deque()
        # Held packets below this session seq may leave: a later one arrived on time.
        self._eq_flush = -1
        self._eq_ready: list[bytes] = []  # released and not held (delivered next)
        self._eq_target = -_INF  # relative one-way delay every held packet reaches
        self._eq_spread = 0.0
        self._eq_refresh = -_INF
        self._eq_seen: dict[int, tuple[float, float]] = {}  # path -> (owd_min, when usable)
        self._eq_owd = 0.0  # the relative one-way delay of the datagram being received
        self._equalized = 0
        self._equalize_overflow = 0
        # equalize "bulk": the ingress's marker; at the egress, whether the datagram being
        # received carries FLAG_HOLD, and per flow the time until which its unmarked
        # packets stay behind its held ones (in order).
        self._bulk = BulkFlows() if config.equalize == "bulk" else None
        # equalize "ack": segments' due times (egress) and the acknowledgements held until
        # then (ingress).
        self._class_equalize = tuple(c.equalize for c in config.classes)
        self._eq_classes = any(e is not None for e in self._class_equalize)
        self._ack_hold = (
            AckHold() if config.equalize == "ack" or "ack" in self._class_equalize else None
        )
        # FEATURES: what this portal does (sent on every path as it comes up) and what the
        # peer said it does (None: nothing yet; a portal older than FEATURES never says).
        # The ingress marks flows *hold* only for a peer whose egress holds them: an older
        # one would drop such DATA (`bad_flags`).
        self._features = (
            (FEATURE_HOLD if config.equalize == "bulk" else 0)
            | (FEATURE_COMPACT | FEATURE_TRIM | FEATURE_PACK if config.compress_headers else 0)
            | (FEATURE_FILL if config.probe_rates else 0)
        )
        self._peer_features: int | None = None
        # Fill PROBEs: probe_rates and the peer answers them; and, as well, some path may
        # still be filled (checked at each timer, so that the timer and the pacer look
        # at no path once every rate is found: +300 ns a get_timer over two idle paths).
        self._peer_fills = False
        self._fill_ready = False
        # Header compression: the ingress's contexts (used once the peer said it takes
        # compact DATA) and the egress's (kept whatever this portal sends).
        self._compressor = Compressor() if config.compress_headers else None
        self._clamp_mss = config.clamp_mss
        self._mss_clamped = 0
        self._ack_filter = config.ack_filter and self._fec is None
        self._ack_queued: dict[int, tuple[PathState, int, int]] = {}
        """(`ack_filter`) flow bucket -> the path, session and bucket numbers of the last
        pure acknowledgement it queued on one path only (it is still the flow's newest
        packet while its bucket number is the flow's last)."""
        self._acks_filtered = 0
        self._sparse_jumps = 0
        self._sparse_queued = 0
        self._compress = False
        self._compact_settle = SETTLE_MAX
        self._decompressor = Decompressor()
        self._left_off: dict[int, int] = {}
        """Path id -> the path_seq a removed path would have sent next: a path added again
        goes on numbering from there (the number is part of the record's nonce)."""
        self._bulk_spread = False  # (the ingress's paths differ in delay: watch flows)
        self._bulk_check = -_INF
        self._eq_flag = False
        self._eq_order: dict[int, float] = {}
        # equalize "bulk", at the egress: the pairs of hosts a flow was held between, and
        # the flows (bucket -> last packet) given "ack" for it (`_ack_remembered`).
        self._bulk_pairs = (
            BulkPairs(config.equalize_remember)
            if config.equalize == "bulk" and config.equalize_remember > 0
            else None
        )
        self._eq_acked: dict[int, float] = {}
        self._eq_paired = 0
        self._out: list[tuple[int, bytes]] = []
        self._events: deque[Event] = deque()
        self._closed = False
        self._now = now
        self._last_receive = now
        self._timer = _INF
        self._drops = dict.fromkeys(DROP_REASONS, 0)
        self._packets_sent = 0
        self._bytes_sent = 0
        self._packets_received = 0
        self._packets_delivered = 0
        self._bytes_delivered = 0
        self._send_no_path = 0
        self._send_queue_full = 0
        self._send_rejected = 0
        self._datagrams_sent = 0
        self._datagrams_received = 0
        self._recompute_timer()

    # -- control -----------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once the session ended (no more traffic in or out)."""
        return self._closed

    @property
    def scheduler(self) -> str:
        """The name of the scheduler in use."""
        return self._scheduler.name

    @property
    def capacity(self) -> float:
        """The usable paths' summed bottleneck-rate estimates, bytes/s."""
        total = 0.0
        for path in self._usable:
            if path.up:
                total += path.cc.btl_bw
        return total

    def set_scheduler(self, name: str) -> None:
        """Switch the scheduler (ValueError naming the valid ones if unknown)."""
        self._scheduler = self._make_scheduler(name)
        self._update_jump()
        ea = isinstance(self._scheduler, EarliestArrivalScheduler)
        self._delay_floor = self.config.delay_floor if ea else 0.0
        for path in self._paths.values():
            path.hold = 0.0
        self._update_queue_limit()

    def set_class_scheduler(self, class_name: str, name: str | None) -> None:
        """Switch one traffic class's scheduler (None: the session's) at run time.

        KeyError if no class has that name, ValueError if the scheduler is unknown.
        """
        # issue 8: run-time scheduler per class
        names = [c.name for c in self._classes]
        if class_name not in names:
            raise KeyError(class_name)
        index = names.index(class_name)
        made = self._make_scheduler(name) if name is not None else None
        classes = list(self._classes)
        classes[index] = replace(classes[index], scheduler=name)
        self._classes = tuple(classes)
        self.config = replace(self.config, classes=self._classes)
        schedulers = list(self._class_schedulers)
        schedulers[index] = made
        self._class_schedulers = tuple(schedulers)
        self._update_jump()

    def _update_jump(self) -> None:
        self._can_jump = not any(
            isinstance(s, RedundantScheduler) for s in (self._scheduler, *self._class_schedulers)
        )
        self._sparse = (
            self.config.sparse_priority
            and self._can_jump
            and isinstance(self._scheduler, EarliestArrivalScheduler)
        )

    @property
    def writable(self) -> bool:
        """False while the send queues hold `queue_limit` or more (stop reading the TUN)."""
        return self._queued_bytes < self._queue_limit and not self._closed

    @property
    def early_drop_active(self) -> bool:
        """Whether `early_drop` is on now: configured, and not quiet (a path that is still
        down went down within `_EARLY_QUIET_MAX` seconds, or a returned path is in its
        hold-down or carried DATA again less than `_EARLY_QUIET_AFTER` ago). The portal
        sizes the TUN queue by it: long while early drop keeps the queues short, the
        short default otherwise."""
        return bool(self._early_at) and self._now >= self._early_quiet_until

    def _make_scheduler(self, name: str) -> Scheduler:
        scheduler = get_scheduler(name)
        config = self.config
        if isinstance(scheduler, EarliestArrivalScheduler):
            scheduler.delay_cutoff = config.delay_cutoff
        elif isinstance(scheduler, RedundantScheduler):
            scheduler.copies = config.redundant_copies
        return scheduler

    def path_ids(self) -> tuple[int, ...]:
        """The ids of the session's paths, ascending."""
        return tuple(sorted(self._paths))

    def add_path(
        self,
        path_id: int,
        *,
        rate_bps: int | None = None,
        metric: int = 0,
        standby: bool = False,
        download_bps: int | None = None,
        now: float,
    ) -> None:
        """Add a path (the local portal sends HELLO on it at once; once it is up, PATH_INFO:
        its metric, standby flag and `download_bps`, the remote's sending rate hint)."""
        if self._closed:
            raise ValueError("session is closed")
        if not 0 <= path_id <= MAX_PATH_ID:
            raise ValueError(f"path_id: must be 0 to {MAX_PATH_ID}, got {path_id}")
        if path_id in self._paths:
            raise ValueError(f"path_id: path {path_id} already exists")
        _check_path_params(rate_bps, metric)
        _check_path_params(download_bps, metric, "download_bps")
        self._now = now
        path = PathState(
            path_id,
            rate_bps=rate_bps,
            metric=metric,
            congestion=self.config.congestion_control,
            standby=standby,
            download_bps=download_bps,
            first_seq=self._left_off.pop(path_id, 0),
            now=now,
        )
        self._start_pmtu(path, now)
        self._paths[path_id] = path
        self._fill_ready = self._peer_fills  # (a new path may have a rate to find)
        if self._local:
            self._send_hello(path, now)
        self._rebuild_usable()
        self._recompute_timer()

    def update_path(
        self,
        path_id: int,
        *,
        rate_bps: int | Literal[_Keep.KEEP] | None = _Keep.KEEP,
        metric: int | Literal[_Keep.KEEP] = _Keep.KEEP,
        standby: bool | Literal[_Keep.KEEP] = _Keep.KEEP,
        download_bps: int | Literal[_Keep.KEEP] | None = _Keep.KEEP,
        now: float,
    ) -> None:
        """Change a path's rate hint (None: unknown), metric, standby flag (bandwidth on
        demand) and/or download rate hint; omitted ones stay. A new rate hint restarts the
        path's estimate from it. The local portal tells the remote (PATH_INFO)."""
        path = self._get_path(path_id)
        new_rate = path.rate_bps if rate_bps is _Keep.KEEP else rate_bps
        new_metric = path.metric if metric is _Keep.KEEP else metric
        new_download = path.download_bps if download_bps is _Keep.KEEP else download_bps
        _check_path_params(new_rate, new_metric)
        _check_path_params(new_download, new_metric, "download_bps")
        self._now = now
        if new_rate != path.rate_bps:
            path.cc.set_rate_hint(new_rate / 8 if new_rate else None, now)
        path.rate_bps = new_rate
        path.metric = new_metric
        path.download_bps = new_download
        if standby is not _Keep.KEEP:
            path.standby = standby
        if self._local and _path_info(path) != (path.peer_info or PathInfo()):
            path.info_left = _INFO_REPEAT
            path.info_due = now
            self._recompute_timer()
        self._rebuild_usable()

    def link_down(self, path_id: int, *, now: float) -> None:
        """The path's link went down (an interface event): the path is down now, without
        waiting for silence; its DATA goes out on the other paths. KeyError if unknown."""
        path = self._paths[path_id]
        self._now = now
        if path.up:
            self._path_down(path, now, "link down")

    def path_rebound(self, path_id: int, *, now: float) -> None:
        """The path's socket was opened again (its link came back or changed address):
        greet the peer on it at once, so it learns the new address and the path comes
        back up within a round trip. KeyError if unknown."""
        path = self._paths[path_id]
        self._now = now
        if self._local:
            path.hello_acked = False
            path.hello_due = now
            self._recompute_timer()

    def remove_path(self, path_id: int, *, now: float) -> None:
        """Stop using a path; the peer is told with PATH_DOWN on the remaining paths."""
        path = self._get_path(path_id)
        self._now = now
        del self._paths[path_id]
        self._left_off[path_id] = path.next_seq
        # What the path had queued goes on the others (what it sent is on its way: the
        # link itself still works).
        stranded = self._drop_queue(path)
        self._reorder.forget_path(path_id)
        self._eq_seen.pop(path_id, None)
        self._ack_queued.clear()  # (some may name the path)
        self._rebuild_usable()
        if stranded:
            self._fail_over([], stranded, 0.0, now)
        if path.up:
            self._events.append(PathDown(path_id, "removed"))
        if not self._closed:
            for other in self._usable:
                self._send_control(other, ControlKind.PATH_DOWN, bytes((path_id,)), now)
        self._recompute_timer()

    def close(self, *, now: float) -> None:
        """End the session: CLOSE on every path, then SessionClosed("local")."""
        if self._closed:
            return
        self._now = now
        for path_id in sorted(self._paths):
            self._send_control(self._paths[path_id], ControlKind.CLOSE, b"", now)
        self._end("local")

    # -- inputs ------------------------------------------------------------------------

    def send_packet(self, ip_packet: bytes, *, now: float) -> bool:
        """Queue one inner IP packet for sending; False (and counted) if refused now.

        Refused when the session is closed, no path exists, or the send queues are full
        (see `writable`; packets of a real-time class are never refused for that).
        """
        paths = self._usable
        if not paths or self._closed or not ip_packet:
            if self._closed or not ip_packet:
                self._send_rejected += 1
            else:
                self._send_no_path += 1
            return False
        if self._clamp_mss and (
            (len(ip_packet) > 33 and ip_packet[9] == 6 and ip_packet[33] & 2)
            if (lead := ip_packet[0]) == 0x45
            else (len(ip_packet) > 53 and ip_packet[6] == 6 and ip_packet[53] & 2)
            if lead >> 4 == 6
            else lead >> 4 == 4
        ):
            # A TCP SYN (IPv4 without options, IPv6 with TCP next), or IPv4 with options.
            clamped = clamp_mss(ip_packet, self._clamp_mss)
            if clamped is not None:
                ip_packet = clamped
                self._mss_clamped += 1
        ack_hold = self._ack_hold
        if ack_hold is not None:
            if ack_hold:
                self._release_acks(ack_hold, now)  # (what is due goes first: order)
            if ack_hold.hold(ip_packet, now):
                return True
        return self._send_now(ip_packet, now)

    def _release_acks(self, ack_hold: AckHold, now: float) -> None:
        """equalize "ack": send the held packets that are due."""
        for packet in ack_hold.release(now):
            self._send_now(packet, now)

    def _send_now(self, ip_packet: bytes, now: float) -> bool:
        """`send_packet` after MSS clamping and equalize "ack"."""
        paths = self._usable
        if not paths:
            self._send_no_path += 1
            return False
        scheduler = self._scheduler
        urgent = False
        rtx = self._rtx
        protect = self._fec_protect
        own_equalize = False
        if self._classes:
            index = match_class(ip_packet, self._classes)
            if index is not None:
                urgent = self._classes[index].priority > 0
                scheduler = self._class_schedulers[index] or scheduler
                if not self._class_nack[index]:
                    rtx = None
                protect = self._class_fec[index]
                own_equalize = self._class_equalize[index] is not None
        bucket = flow_bucket(ip_packet)
        pure_ack = self._ack_filter and is_pure_ack(ip_packet)
        if pure_ack:
            queued_ack = self._ack_queued.get(bucket)
            if queued_ack is not None and self._replace_ack(queued_ack, bucket, ip_packet, rtx):
                self._acks_filtered += 1
                return True
        backlog = self._backlog
        bulk = self._bulk
        if bulk is not None:
            if now >= self._bulk_check:
                self._check_bulk(now)
            if (
                self._bulk_spread
                and not own_equalize  # (a class's own "ack" or "off": never marked)
                and (tcp_seq := tcp_data_seq(ip_packet)) >= 0
            ):
                bulk.on_packet(bucket, len(ip_packet), now, backlog.get(bucket, 0), tcp_seq)
        sparse = False
        if not urgent and self._sparse and bucket not in backlog:
            urgent = sparse = True  # a sparse flow: to the head of the queue
        queued = self._queued_bytes
        if not self._early_at or now < self._early_quiet_until:
            pass  # early drop off (or quiet: a path is down)
        elif queued < self._early_at:
            self._early_count = 0
        elif not urgent and now >= self._early_next:
            fat = backlog.get(bucket, 0)
            if fat and fat * len(ip_packet) * len(backlog) >= queued:
                marked = ecn_marked(ip_packet)
                signalled = self._signalled
                if signalled:
                    for old in [b for b, t in signalled.items() if now - t > _LOSS_BASED_MEMORY]:
                        del signalled[old]
                signalled[bucket] = now
                self._early_count += 1
                self._early_next = now + self.config.early_drop_interval / math.sqrt(
                    self._early_count
                )
                if marked is None:
                    self._early_dropped += 1
                    return True
                self._early_marked += 1
                ip_packet = marked
        if (not urgent and queued >= self._queue_limit) or len(self._out) >= self._max_queued:
            self._send_queue_full += 1
            return False
        if self._fair and not urgent and (self._fq_bytes or queued >= self._fq_target):
            # fair_queue: wait in the flow's own queue (counted as queued already).
            size = len(ip_packet)
            waiting = self._fq.get(bucket)
            if waiting is None:
                waiting = self._fq[bucket] = deque()
                self._fq_turns.append(bucket)
            waiting.append((ip_packet, scheduler, rtx, protect, pure_ack))
            self._fq_bytes += size
            self._queued_bytes += size
            backlog[bucket] = backlog.get(bucket, 0) + 1
            self._fq_pump(now)
            return True
        return self._dispatch(
            ip_packet, bucket, scheduler, rtx, protect, urgent, pure_ack, now, sparse
        )

    def _fq_pump(self, now: float) -> None:
        """`fair_queue`: hand waiting packets to the scheduler, a flow at a time (deficit
        round robin), while the paths hold less than `_fq_target` queued."""
        if self._fq_pumping:
            return
        self._fq_pumping = True
        try:
            fq = self._fq
            turns = self._fq_turns
            deficit = self._fq_deficit
            backlog = self._backlog
            while turns and self._queued_bytes - self._fq_bytes < self._fq_target:
                bucket = turns[0]
                waiting = fq[bucket]
                entry = waiting.popleft()
                size = len(entry[0])
                credit = deficit.get(bucket, 0)
                if credit < size:
                    credit += _FQ_QUANTUM
                credit -= size
                if not waiting:
                    del fq[bucket]
                    deficit.pop(bucket, None)
                    turns.popleft()
                elif credit < len(waiting[0][0]):
                    deficit[bucket] = credit
                    turns.rotate(-1)  # its turn is over
                else:
                    deficit[bucket] = credit
                self._fq_bytes -= size
                self._queued_bytes -= size  # (_dispatch counts it again, on its path)
                left = backlog[bucket] - 1
                if left:
                    backlog[bucket] = left
                else:
                    del backlog[bucket]
                ip_packet, scheduler, rtx, protect, pure_ack = entry
                self._dispatch(ip_packet, bucket, scheduler, rtx, protect, False, pure_ack, now)
        finally:
            self._fq_pumping = False

    def _dispatch(
        self,
        ip_packet: bytes,
        bucket: int,
        scheduler: Scheduler,
        rtx: RetransmitBuffer | None,
        protect: bool,
        urgent: bool,
        pure_ack: bool,
        now: float,
        sparse: bool = False,
    ) -> bool:
        """`_send_now` once the packet is admitted: choose its path(s), number it, queue
        it there (and protect it with a parity). `sparse`: `urgent` only as a sparse flow's
        packet, which jumps a non-empty queue only within the path's share."""
        paths = self._usable
        if not paths:
            self._send_no_path += 1
            return False
        backlog = self._backlog
        size = len(ip_packet)
        pair = (
            self._split_pair(paths, scheduler, size, bucket, now)
            if self._split_below
            and size >= _SPLIT_MIN
            and len(paths) >= 2
            and isinstance(scheduler, EarliestArrivalScheduler)
            else None
        )
        if pair is not None:
            chosen = []
        elif isinstance(scheduler, RedundantScheduler):
            chosen = scheduler.select_paths(paths, size, bucket, now=now)
        elif urgent and self._can_jump and isinstance(scheduler, EarliestArrivalScheduler):
            path = scheduler.select_path(paths, size, bucket, now=now, head=True)
            if sparse and path is not None and path.queue and not self._may_jump(path, size, now):
                # Its share used: the tail of whichever path it then reaches first.
                urgent = False
                self._sparse_queued += 1
                path = scheduler.select_path(paths, size, bucket, now=now)
            chosen = [path] if path is not None else []
        elif (
            self._delay_floor
            and isinstance(scheduler, EarliestArrivalScheduler)
            and self._loss_based(bucket, now)
        ):
            path = scheduler.select_path(paths, size, bucket, now=now, hold=False)
            chosen = [path] if path is not None else []
        else:
            path = scheduler.select_path(paths, size, bucket, now=now)
            chosen = [path] if path is not None else []
        if not chosen and pair is None:
            self._send_no_path += 1
            return False
        session_seq = self._tx_session_seq
        self._tx_session_seq = (session_seq + 1) & MASK32
        bucket_seqs = self._tx_bucket_seqs
        bucket_seq = bucket_seqs.get(bucket, 0)
        bucket_seqs[bucket] = (bucket_seq + 1) & MASK32
        item = (session_seq, bucket, bucket_seq, ip_packet, now)
        if rtx is not None:
            rtx.on_sent(session_seq, item, now)
            tokens = self._rtx_tokens + size * _RESEND_SHARE
            burst = self._rtx_burst
            self._rtx_tokens = tokens if tokens < burst else burst
        for path in chosen:
            queue = path.queue
            if urgent and queue and self._can_jump:
                # To the head, keeping its own (newest) number and the head's schedule
                # time (control stamps rely on it); sent flagged, so the egress takes no
                # proof from it about the older DATA still queued behind it.
                queue.appendleft((session_seq, bucket, bucket_seq, ip_packet, queue[0][4]))
                path.flagged[session_seq] = FLAG_JUMPED
                if sparse:
                    self._sparse_jumps += 1
            else:
                queue.append(item)
            path.queued_bytes += size
            self._queued_bytes += size
            backlog[bucket] = backlog.get(bucket, 0) + 1
            if len(queue) == 1 or urgent:
                self._release(path, now)
        if pure_ack:
            acks = self._ack_queued
            if len(chosen) == 1 and pair is None:
                if len(acks) >= _ACK_FLOWS and bucket not in acks:
                    acks.clear()  # (most are stale: sent long ago; they only cost memory)
                acks[bucket] = (chosen[0], session_seq, bucket_seq)
            else:
                acks.pop(bucket, None)
        if pair is not None:
            # issue 7: in two pieces on two slow paths (a resend goes whole).
            first, second, cut = pair
            for index, (path, piece) in enumerate(
                ((first, ip_packet[:cut]), (second, ip_packet[cut:]))
            ):
                self._enqueue(
                    path, (session_seq, bucket, bucket_seq, _Piece(piece, index), now), now
                )
                if len(path.queue) == 1:
                    self._release(path, now)
            self._split += 1
        self._packets_sent += 1
        self._bytes_sent += size
        fec = self._fec
        if protect and fec is not None and fec.group_size >= 2:
            parity = fec.add(session_seq, _SYMBOL.pack(bucket, bucket_seq) + ip_packet, now)
            if parity is not None:
                self._fec_due = _INF
                self._send_parity(parity, now)
            elif fec.open == 2:
                # A group closes early after fec_max_delay (a pause, a slow flow); a lone
                # packet waits for a second one (a parity of one would be a copy).
                due = self._fec_due = fec.opened + self.config.fec_max_delay
                if due < self._timer:
                    self._timer = due
        return True

    def _may_jump(self, path: PathState, size: int, now: float) -> bool:
        """Whether a sparse packet of `size` bytes may jump `path`'s non-empty queue (and
        if so, take it from the path's bucket: `_SPARSE_SHARE` of its pacing rate)."""
        rate = path.cc.pacing_rate * _SPARSE_SHARE
        depth = rate * _SPARSE_BURST
        if depth < _SPARSE_BURST_MIN:
            depth = _SPARSE_BURST_MIN
        tokens = path.jump_tokens + (now - path.jump_at) * rate
        path.jump_at = now
        if tokens > depth:
            tokens = depth
        if tokens < size:
            path.jump_tokens = tokens
            return False
        path.jump_tokens = tokens - size
        return True

    def _replace_ack(
        self,
        queued: tuple[PathState, int, int],
        bucket: int,
        ip_packet: bytes,
        rtx: RetransmitBuffer | None,
    ) -> bool:
        """`ack_filter`: put pure acknowledgement `ip_packet` in the place of the one its
        flow queued last, `queued` (path, session and bucket numbers), if that is still the
        flow's newest packet (no later one took a bucket number or waits in the flow's
        fair queue), still waits near the tail of its path's queue, and `ip_packet`
        supersedes it."""
        path, seq, bucket_seq = queued
        if (self._tx_bucket_seqs.get(bucket, 0) - bucket_seq) & MASK32 != 1 or bucket in self._fq:
            # A later packet of the flow is queued (or sent) behind it, or waits in the
            # flow's own queue (fair_queue: numbered only when it leaves).
            return False
        queue = path.queue
        size = len(queue)
        for index in range(size - 1, max(size - _ACK_SCAN, 0) - 1, -1):
            item = queue[index]
            if item[0] != seq:
                continue
            old = item[3]
            if not supersedes(ip_packet, old):
                return False
            new_item = (seq, item[1], item[2], ip_packet, item[4])
            queue[index] = new_item
            grown = len(ip_packet) - len(old)
            path.queued_bytes += grown
            self._queued_bytes += grown
            if rtx is not None:
                rtx.replace(seq, new_item)
            return True
        return False  # sent already (or moved to another path)

    def _check_bulk(self, now: float) -> None:
        """equalize "bulk", at the ingress: whether the usable up paths (within
        `delay_cutoff` of the fastest) differ in delay by `_EQUALIZE_MIN` or more; only
        then are flows watched for PROBE_RTT (nothing to equalize otherwise). The marker
        also learns those paths' summed rate (what a flow could fill)."""
        self._bulk_check = now + _EQUALIZE_REFRESH
        delays = [(path_delay(p), p.cc.btl_bw) for p in self._usable if p.up]
        if len(delays) < 2 or not (self._peer_features or 0) & FEATURE_HOLD:
            self._bulk_spread = False
            return
        fastest = min(d for d, _ in delays)
        limit = fastest + self.config.delay_cutoff
        near = [(d, rate) for d, rate in delays if d <= limit]
        self._bulk_spread = max(d for d, _ in near) - fastest >= _EQUALIZE_MIN
        if self._bulk is not None:
            self._bulk.capacity = sum(rate for _, rate in near)

    def _release(self, path: PathState, now: float) -> None:
        """Send what the pacer and the inflight cap allow from `path`'s queue."""
        queue = path.queue
        cc = path.cc
        release = path.next_release
        if release - _QUANTUM > now:
            return  # (as `get_timer` computes it: at that timer, this goes on)
        horizon = now + _QUANTUM
        floor = now - _BURST
        tracker = path.tracker
        cwnd = cc.cwnd
        if tracker.inflight >= cwnd:
            path.cwnd_limited = True
            return
        # Data waited longer than the credit covers and not for the inflight cap: the
        # driver woke up late, so what this batch delivers says how fast we sent, not
        # what the path can carry (its rate samples are marked app-limited).
        late = release < floor and tracker.inflight > 0 and not path.cwnd_limited
        path.cwnd_limited = False
        if release < floor:
            release = floor
        rate = cc.pacing_rate
        out = self._out
        path_id = path.path_id
        session_id = self.session_id
        tx = int(now * 1_000_000) & MASK32
        released = 0
        sent_bytes = 0
        count = path.datagrams_sent
        unacked = path.unacked
        backlog = self._backlog
        flagged = path.flagged
        mtu = path.mtu
        pmtu = path.pmtu
        # (issue 7) The session's first DATA, whatever its size, starts every up path's MTU
        # probing: a TCP flow's SYN then has them confirmed before the flow's data, which
        # went out in fragments for a round trip of each path before (115 in one start).
        probe_from = -1 if pmtu is not None and not pmtu.started else NO_LIMIT
        hold = path.hold
        marked = self._bulk.marked if self._bulk is not None else None
        compressor = self._compressor
        compress = compressor.compress if self._compress and compressor is not None else None
        # (A compact packet must not overtake its context: how long a context sent on
        # this path may take to arrive, at most.)
        settle = (
            (_settle(path.srtt) if path.srtt is not None else self._compact_settle)
            if compress is not None
            else 0.0
        )
        while queue and release - _QUANTUM <= now and tracker.inflight < cwnd:
            if hold:
                head = queue[0]
                due = head[4] + hold
                if (
                    due > horizon
                    and not (flagged and head[0] in flagged)
                    and not (self._signalled and self._loss_based(head[1], now))
                ):
                    # delay_floor: bulk DATA waits (a jumped packet does not).
                    if due > release:
                        release = due
                    break
            item = queue.popleft()
            session_seq, bucket, bucket_seq, ip_packet, _ = item
            flags = flagged.pop(session_seq, 0) if flagged else 0
            if marked and bucket in marked:
                flags |= FLAG_HOLD
            left = backlog.pop(bucket, 1) - 1
            if left > 0:
                backlog[bucket] = left
            size = len(ip_packet)
            released += size
            wire = size + DATA_HEADER_SIZE
            if wire > probe_from:
                self._pmtu_start(path, now)
                probe_from = NO_LIMIT
            if wire > mtu or type(ip_packet) is _Piece:
                # issue 7: too large for the path (fragments, back to back), or one piece
                # of a packet split across paths.
                wire, path_seq = self._send_fragments(
                    path, item, flags & ~FLAG_HOLD, tx, now, late or not queue
                )
                sent_bytes += wire
                if path_seq >= 0:
                    unacked.append((path_seq, item))
                release += wire / rate
                continue
            if compress is not None and queue:
                # Only while packets wait for this path: its rate is the limit, and the
                # bytes saved carry more; otherwise the CPU it costs buys nothing. (A
                # resend goes whole: it brings its context back if the egress lost it.)
                form, ip_packet = compress(bucket, ip_packet, now, settle, flags & FLAG_RESENT)
                if form:
                    flags |= form
                    wire = len(ip_packet) + DATA_HEADER_SIZE
            sent_bytes += wire
            wire += _OVERHEAD
            path_seq = path.next_seq
            path.next_seq = path_seq + 1
            out.append(
                (
                    path_id,
                    _DATA_PACK(
                        VERSION,
                        FrameType.DATA,
                        flags,
                        path_id,
                        session_id,
                        path_seq & MASK32,
                        tx,
                        session_seq,
                        bucket,
                        bucket_seq,
                    )
                    + ip_packet,
                )
            )
            tracker.on_sent(path_seq, wire, now, late or not queue)
            unacked.append((path_seq, item))
            path.datagrams_sent += 1
            release += wire / rate
        path.next_release = release
        while len(unacked) > _UNACKED_LIMIT:
            unacked.popleft()
        if released and path.awaiting is None:
            path.awaiting = now  # issue 6: feedback is due for this DATA
        if queue:
            if tracker.inflight >= cwnd:
                path.cwnd_limited = True
        elif tracker.inflight < cwnd:
            tracker.mark_app_limited()
        if released:
            path.queued_bytes -= released
            self._queued_bytes -= released
            path.bytes_sent += sent_bytes
            path.last_send_time = now
            self._last_data_time = now
            self._datagrams_sent += path.datagrams_sent - count
            if not path.standby:
                self._bod_sent += sent_bytes
            if self._fq_bytes:
                self._fq_pump(now)

    def _release_all(self, now: float) -> None:
        for path in self._paths.values():
            if path.queue:
                self._release(path, now)

    def _drop_queue(self, path: PathState) -> list[tuple[int, int, int, bytes, float]]:
        """Take a path's queue away (it went down or away) and forget its inflight; the
        queue is returned for the failover (which counts what it cannot place)."""
        taken = list(path.queue)
        self._unqueued(path, taken)
        path.queue.clear()
        path.backdated.clear()
        path.tracker.clear()
        path.unacked.clear()
        path.flagged.clear()
        path.awaiting = None
        return taken

    def _unqueued(
        self, path: PathState, items: Iterable[tuple[int, int, int, bytes, float]]
    ) -> None:
        """Undo `_enqueue`'s accounting (queued bytes, the flows' backlog) for `items`,
        taken out of `path`'s queue by the caller."""
        backlog = self._backlog
        size = 0
        for item in items:
            size += len(item[3])
            left = backlog.pop(item[1], 1) - 1
            if left > 0:
                backlog[item[1]] = left
        path.queued_bytes -= size
        self._queued_bytes -= size

    def _loss_based(self, bucket: int, now: float) -> bool:
        """`delay_floor` leaves the bulk flow `bucket` alone (no hold) while it is
        loss-based: early drop signalled it within `_LOSS_BASED_MEMORY` seconds (a CUBIC
        flow fills the queues anyway). A flow capped by its window, as BBR is over unequal
        delays, never fills them and is held from its start: BBR keeps the minimum RTT it
        saw for 10 s, and a flow first let through and then held collapsed (52 to 25-30
        Mbit/s on the four-link case) because its window still counted on it."""
        signalled = self._signalled.get(bucket)
        return signalled is not None and now - signalled < _LOSS_BASED_MEMORY

    def _update_queue_limit(self) -> None:
        total = 0.0
        for path in self._usable:
            total += path.cc.pacing_rate
        limit = int(total * self.config.queue_limit)
        self._queue_limit = limit if limit > _QUEUE_FLOOR else _QUEUE_FLOOR
        # Header compression, for a path without a round trip yet (it carried no DATA
        # this way): a new context goes whole for longer than the slowest known round
        # trip; SETTLE_MAX while none is known.
        if self._compress:
            settle = 0.0
            for path in self._paths.values():
                srtt = path.srtt
                if path.up and srtt is not None and srtt > settle:
                    settle = srtt
            self._compact_settle = _settle(settle) if settle > 0 else SETTLE_MAX
        self._early_at = int(self._queue_limit * self.config.early_drop)
        limit = self._queue_limit
        self._rtx_burst = limit if limit > _RESEND_BURST else _RESEND_BURST
        if self._delay_floor:
            self._update_holds()
        if self._fair:
            self._update_fair_target()

    def _update_fair_target(self) -> None:
        """`fair_queue`: what the paths may hold queued. The scheduler sends a packet
        where it arrives first, so a faster path must have the delay spread's worth of its
        rate queued before a slower one takes any: each usable up path its rate times the
        slowest's delay less its own, plus `_FQ_MARGIN` of it (at most `queue_limit`; a
        path beyond `delay_cutoff` is used only while the others are full, so with one
        the paths may hold all of it)."""
        ups = [p for p in self._usable if p.up]
        target = 0.0
        if ups:
            delays = [path_delay(p) for p in ups]
            top = max(delays)
            for path, delay in zip(ups, delays, strict=True):
                target += path.cc.pacing_rate * (top - delay + _FQ_MARGIN)
        limit = self._queue_limit
        self._fq_target = int(min(max(target, _FQ_FLOOR), limit))
        if self._fq_bytes:
            self._fq_pump(self._now)

    def _update_holds(self) -> None:
        """`delay_floor`: each usable path's hold for bulk DATA, so that a packet's round
        trip (its path's delay, the hold, and the fastest path's delay back) is at least
        `delay_floor` times the rate-weighted mean one-way delay of the usable paths."""
        paths = [p for p in self._usable if p.up]
        for path in self._paths.values():
            path.hold = 0.0
        if len(paths) < 2:
            return
        delays = [path_delay(p) for p in paths]
        rates = [p.cc.btl_bw for p in paths]
        total = sum(rates)
        if total <= 0:
            return
        mean = sum(r * d for r, d in zip(rates, delays, strict=True)) / total
        target = self._delay_floor * mean - min(delays)
        for path, delay in zip(paths, delays, strict=True):
            hold = target - delay
            path.hold = hold if hold > 0.001 else 0.0

    def receive_datagram(self, data: Buffer, *, now: float) -> int | None:
        """Process one datagram from the peer: the path id if accepted, None if dropped."""
        self._now = now
        if self._closed:
            self._drops["unknown_session"] += 1
            return None
        if type(data) is not bytes:
            data = bytes(data)  # delivered packets are bytes
        frame: Frame | None = None
        if len(data) > DATA_HEADER_SIZE and data[:3] in _FAST_DATA:
            _, _, flags, path_id, session_id, path_seq, tx_us, session_seq, bucket, bucket_seq = (
                _DATA_UNPACK(data)
            )
            self._eq_flag = bool(flags & FLAG_HOLD)
        else:
            try:
                frame = decode_datagram(data)
            except ProtocolError as exc:
                self._drops[exc.reason] += 1
                return None
            self._eq_flag = type(frame) is DataFrame and frame.hold
            path_id = frame.path_id
            session_id = frame.session_id
            path_seq = frame.path_seq
            tx_us = frame.tx_time_us
        if session_id != self.session_id:
            self._drops["unknown_session"] += 1
            return None
        path = self._paths.get(path_id)
        if path is None:
            if self._local or path_id > MAX_PATH_ID:
                self._drops["unknown_path"] += 1
                return None
            self._fill_ready = self._peer_fills  # (a new path may have a rate to find)
            path = self._paths[path_id] = PathState(
                path_id,
                congestion=self.config.congestion_control,
                first_seq=self._left_off.pop(path_id, 0),
                now=now,
            )
            self._start_pmtu(path, now)
        # Relative one-way delay in the session's frame (the clock offset cancels).
        raw = (int(now * 1_000_000) - tx_us) & MASK32
        base = self._owd_base_us
        if base is None:
            base = self._owd_base_us = raw
        owd = (((raw - base + _HALF32) & MASK32) - _HALF32) / 1_000_000
        self._eq_owd = owd
        if not path.on_datagram_received(path_seq, tx_us, len(data), owd, now):
            self._drops["duplicate"] += 1
            return None
        self._last_receive = now
        self._datagrams_received += 1
        if not path.up:
            self._path_up(path, now)
        ref = self._rx_tx_ref
        tx = ref + ((tx_us - ref + _HALF32) & MASK32) - _HALF32
        if tx > ref:
            self._rx_tx_ref = tx
        if frame is None:
            payload = data[DATA_HEADER_SIZE:]
            if flags & _FORMS:
                rebuilt = self._uncompact(path, flags, bucket, payload, now)
                if rebuilt is None:
                    return None
                payload = rebuilt
            if not self._receive_data(path, session_seq, bucket, bucket_seq, payload, tx, now):
                return None
            return path.path_id
        if type(frame) is not DataFrame and type(frame) is not FragFrame:
            # (A jumped DATA proves nothing by its time; a fragment's own packet is not
            # in yet: its completion brings the path's progress.)
            self._pass_by_time(path, tx)
        if type(frame) is FeedbackFrame:
            if self._local:
                path.hello_acked = True
            paths = self._paths
            lowest = path.owd_min.value
            back_queue = self._eq_owd - lowest if lowest is not None else 0.0
            for entry in frame.entries:
                target = paths.get(entry.path_id)
                if target is not None:
                    # issue 6: the path answers. Only feedback counts: it says the DATA
                    # direction works (a NACK or a download's DATA on the path proves
                    # only the way back).
                    target.awaiting = None
                    target.on_feedback(entry, now, back_queue)
                    pmtu = target.pmtu
                    if pmtu is not None and pmtu.probe_size is not None:
                        # (the probe's answer: sent at once, its highest is the probe)
                        pmtu.on_echo(entry.highest_seq, now)
                        _set_mtu(target, pmtu.mtu)
                    unacked = target.unacked
                    if unacked:
                        acked = target.acked_highest
                        while unacked and unacked[0][0] <= acked:
                            unacked.popleft()
                    if target.queue:
                        self._release(target, now)
                    elif self._fill_ready and self._filling(target, now):
                        self._fill(target, now)
            self._update_queue_limit()
        elif type(frame) is ProbeFrame:
            if frame.reply_requested:
                self._send_feedback(path, now)
            elif frame.padding:
                self._arm_feedback(path, now)  # a fill PROBE: answered as DATA is
        elif type(frame) is ControlFrame:
            self._receive_control(path, frame, now)
        elif type(frame) is NackFrame:
            self._receive_nack(path, frame, now)
        elif type(frame) is FecFrame:
            self._receive_fec(path, frame, tx, now)
        elif type(frame) is FragFrame:
            self._receive_frag(path, frame, tx, now)
        elif type(frame) is DataFrame:
            # DATA with FLAG_JUMPED (other DATA takes the fast path above).
            inner = frame.payload
            if frame.compact or frame.context:
                rebuilt = self._uncompact(
                    path,
                    (
                        FLAG_COMPACT
                        | (FLAG_TRIMMED if frame.trimmed else 0)
                        | (FLAG_PACKED if frame.packed else 0)
                    )
                    if frame.compact
                    else FLAG_CONTEXT,
                    frame.bucket,
                    inner,
                    now,
                )
                if rebuilt is None:
                    return None
                inner = rebuilt
            if not self._receive_data(
                path,
                frame.session_seq,
                frame.bucket,
                frame.bucket_seq,
                inner,
                tx,
                now,
                progress=not (frame.jumped or frame.resent),
                resent=frame.resent,
            ):
                return None
            return path.path_id
        if (
            path.feedback_due is None
            and path.rx_highest + 1 - path.rx_received != path.reported_lost
        ):
            # Only DATA elicits feedback (else both ends would answer each other's); but
            # a late or missing datagram of any type changes the loss figure the peer
            # holds, so report it once.
            due = path.feedback_due = now + self._feedback_interval
            if due < self._timer:
                self._timer = due
        return path.path_id

    def handle_timer(self, *, now: float) -> None:
        """Do whatever is due by `now` (call at or after `get_timer()`)."""
        self._now = now
        if self._closed:
            return
        if self._ack_hold:
            self._release_acks(self._ack_hold, now)
        config = self.config
        local = self._local
        dead_interval = config.dead_interval
        keepalive = config.keepalive_interval
        for path in list(self._paths.values()):
            if path.feedback_due is not None and path.feedback_due <= now:
                self._send_feedback(path, now)
            if (
                path.up
                and path.last_receive_time is not None
                and path.last_receive_time + dead_interval <= now
            ) or (
                # issue 6: silent while feedback is due for DATA sent on it
                path.up
                and path.awaiting is not None
                and path.awaiting + self._silence_timeout(path) <= now
            ):
                self._path_down(path, now, "timeout")
            if path.features_left and path.features_due <= now:
                path.features_left -= 1
                path.features_due = now + config.hello_interval
                self._send_features(path, now)
            if not local:
                continue
            if path.info_left and path.info_due <= now:
                # (After a change: sent _INFO_REPEAT times, one may be lost.)
                path.info_left -= 1
                path.info_due = now + config.hello_interval
                self._send_path_info(path, now)
            if not path.hello_acked:
                if path.hello_due <= now:
                    self._send_hello(path, now)
            elif _keepalive_ref(path) + keepalive <= now:
                self._send_probe(path, now)
        if config.idle_timeout is not None and self._last_receive + config.idle_timeout <= now:
            self._end("idle")
            return
        if self._bod_due <= now:
            self._check_bod(now)
        if self._health_due <= now:
            self._check_health(now)
        for path in self._paths.values():
            if path.probation_until != -_INF and path.probation_until <= now:
                path.probation_until = -_INF  # hold-down over: carries DATA again
                self._rebuild_usable()
        for path in self._paths.values():
            log = path.tracker.log
            if path.queue:
                if log and path.tracker.inflight >= path.cc.cwnd:
                    path.tracker.expire(now, _inflight_expiry(path))
                self._release(path, now)
            elif log and log[0][2] + _inflight_expiry(path) <= now:
                # An idle path's pass PROBEs get no feedback of their own: forget them, or
                # they pile up as phantom inflight, read as a backlog by the scheduler
                # (and past the cwnd, the path would never carry DATA again).
                path.tracker.expire(now, _inflight_expiry(path))
        if self._fill_ready:
            waiting = False  # (a path that may still be filled)
            for path in self._paths.values():
                if self._filling(path, now):
                    waiting = True
                    if not path.queue and path in self._usable:
                        self._fill(path, now)
                elif path.cc.finding_rate and (
                    path.fill_from is None
                    or (now - path.fill_from < _FILL_FOR and path.fill_bytes < _FILL_BUDGET)
                ):
                    waiting = True  # (not usable now: down, standby or a backup)
            self._fill_ready = waiting
        # (After every release: DATA released just now makes the idle paths' passes due.)
        for path in self._paths.values():
            if not path.queue and self._pass_due(path) <= now:
                # Asks for a reply (keepalive) when nothing arrived for a keepalive interval;
                # always on a degraded path, which carries no DATA: the answers are the
                # samples its health is judged on again (the remote portal sends no
                # keepalives, and its degraded paths never recovered).
                last = path.last_receive_time
                reply = (local and (last is None or last + keepalive <= now)) or (
                    path.degraded_until != -_INF
                )
                self._send_probe(path, now, reply=reply)
        self._adapt_reorder_timeout()
        if self._nack is not None and self._gap_due <= now:
            self._check_gaps(now)
        if self._fec_due <= now:
            self._fec_due = _INF
            parity = self._fec.flush() if self._fec is not None else None
            if parity is not None:
                self._send_parity(parity, now)
        if self._fec_decoder is not None:
            self._fec_decoder.expire(now)
        if self._reassembler is not None:
            self._reassembler.expire(now)
        for path in self._paths.values():
            pmtu = path.pmtu
            if pmtu is not None and path.up and pmtu.next_event(self._probe_timeout(path)) <= now:
                size = pmtu.due(now, self._probe_timeout(path))
                _set_mtu(path, pmtu.mtu)
                if size is not None:
                    stamp = self._send_probe(path, now, padding=size - HEADER_SIZE)
                    pmtu.on_sent(size, stamp, now)
                    _charge_pacer(path, size, now)
        self._reorder.expire(now=now)
        if self._eq_line:
            self._release_equalized(now)
        self._recompute_timer()

    # -- outputs -----------------------------------------------------------------------

    def datagrams_to_send(self, *, now: float) -> list[tuple[int, bytes]]:
        """The datagrams to send, as (path id, bytes), oldest first."""
        self._release_all(now)
        out = self._out
        if not out:
            return []
        self._out = []
        return out

    def packets_to_deliver(self) -> list[bytes]:
        """Inner packets released by the reorder buffer, in release order."""
        if self._eq_target == -_INF and not self._eq_line and not self._eq_ready:
            # (equalize off, or nothing to hold now: one path or equal delays)
            ready = self._reorder.pop_ready(now=self._now)
        else:
            now = self._now
            packets, tags, seqs, buckets = self._reorder.pop_ready_tagged(now=now)
            if packets and (self._eq_line or max(tags) > now):
                self._equalize(packets, tags, seqs, buckets, now)
                packets = []
            if self._eq_line:
                self._release_equalized(now)
            ready = self._eq_ready
            if ready:
                self._eq_ready = []
                ready += packets
            else:
                ready = packets
        if ready:
            self._packets_delivered += len(ready)
            self._bytes_delivered += sum(map(len, ready))
        return ready

    def _equalize(
        self,
        packets: list[bytes],
        tags: list[float],
        seqs: list[int],
        buckets: list[int],
        now: float,
    ) -> None:
        """Queue released `packets` for delivery: those `equalize` applies to at their
        tag (the time set when each arrived), never before a packet held earlier (per-flow
        order); the others at once."""
        line = self._eq_line
        ready = self._eq_ready
        tail = line[-1][0] if line else now
        held = 0
        for packet, until, seq, bucket in zip(packets, tags, seqs, buckets, strict=True):
            if until == _EQ_EXEMPT:
                ready.append(packet)
                continue
            if until > tail:
                tail = until
            else:
                until = tail
            if until <= now and not line:
                ready.append(packet)
                continue
            line.append((until, seq, packet, bucket))
            if until > now:
                held += 1
        self._equalized += held
        while len(line) > _EQUALIZE_LIMIT:
            ready.append(line.popleft()[2])
            self._equalize_overflow += 1

    def _ack_remembered(self, bucket: int, payload: bytes, hold: float, now: float) -> None:
        """equalize "bulk", at the egress: a packet of a connection between a remembered
        pair of hosts (`BulkPairs`) is noted for "ack" (this portal's ingress holds its
        acknowledgement, and a SYN-ACK's, for `ACK_HOLD_SHARE` of its wait), not held."""
        acked = self._eq_acked
        if now - acked.get(bucket, -_INF) >= _EQ_ACKED_FORGET:
            self._eq_paired += 1
            if len(acked) >= _EQ_ACKED_LIMIT:
                old = now - _EQ_ACKED_FORGET
                for key in [k for k, t in acked.items() if t < old]:
                    del acked[key]
        acked[bucket] = now
        if self._eq_flag:
            # (the sender's ingress sees bulk still: the pair stays remembered)
            assert self._bulk_pairs is not None
            self._bulk_pairs.on_marked(bucket, payload, now)
        ack_hold = self._ack_hold
        if ack_hold is None:
            ack_hold = self._ack_hold = AckHold()
        cap = self.config.delay_cutoff
        hold *= ACK_HOLD_SHARE
        ack_hold.on_data(
            payload, now + (hold if hold < cap else cap) if hold > 0.0 else now, now, synack=True
        )

    def _let_go(self, bucket: int) -> None:
        """equalize "bulk": the sender's ingress unmarked flow `bucket` (its pause was not
        PROBE_RTT): its packets held for that trial leave now, in order."""
        line = self._eq_line
        if any(entry[3] == bucket for entry in line):
            self._eq_ready.extend(entry[2] for entry in line if entry[3] == bucket)
            self._eq_line = deque(entry for entry in line if entry[3] != bucket)
        # (and those still in the reorder buffer, waiting for an earlier packet)
        self._reorder.untag(bucket)

    def _release_equalized(self, now: float) -> None:
        """Move the held packets whose time has come to the packets to deliver."""
        line = self._eq_line
        ready = self._eq_ready
        due = now + _EQUALIZE_EARLY
        flush = self._eq_flush
        while line and (line[0][0] <= due or line[0][1] < flush):
            ready.append(line.popleft()[2])

    def _refresh_equalize(self, now: float) -> None:
        """The target delay: the largest minimum one-way delay of the usable up paths, and
        of those usable in the last `_EQUALIZE_MEMORY` seconds, within `delay_cutoff` of the
        smallest (none while fewer than two paths count)."""
        self._eq_refresh = now + _EQUALIZE_REFRESH
        seen = self._eq_seen
        fastest = _INF
        for path in self._usable:
            if path.up and (value := path.owd_min.value) is not None:
                seen[path.path_id] = (value, now)
                if value < fastest:
                    fastest = value
        target = -_INF
        counted = 0
        if fastest < _INF:
            limit = fastest + self.config.delay_cutoff
            horizon = now - _EQUALIZE_MEMORY
            for path_id, (value, when) in list(seen.items()):
                if when < horizon:
                    del seen[path_id]
                elif value <= limit:
                    counted += 1
                    if value > target:
                        target = value
        if counted < 2 or target - fastest < _EQUALIZE_MIN:
            self._eq_target = -_INF
            self._eq_spread = 0.0
        else:
            self._eq_target = target
            self._eq_spread = target - fastest

    def next_event(self) -> Event | None:
        """The oldest pending event, or None."""
        events = self._events
        return events.popleft() if events else None

    def get_timer(self) -> float | None:
        """The one absolute time at which `handle_timer` must next be called (None: never).

        It may be earlier than needed (a deadline that moved later since), never later.
        """
        if self._closed:
            return None
        timer = self._timer
        for path in self._paths.values():
            if path.queue:
                tracker = path.tracker
                if tracker.inflight < path.cc.cwnd:
                    release = path.next_release - _QUANTUM
                elif tracker.log:
                    release = tracker.log[0][2] + _inflight_expiry(path)
                else:
                    continue
                if release < timer:
                    timer = release
            else:
                due = self._pass_due(path)
                if (
                    self._fill_ready
                    and path.tracker.inflight < path.cc.cwnd
                    and self._filling(path, self._now)
                ):
                    fill = path.next_release - _QUANTUM
                    if fill < due:
                        due = fill
                if due < timer:
                    timer = due
        deadline = self._reorder.deadline()
        if deadline is not None and deadline < timer:
            timer = deadline
        if self._eq_line:
            held = self._eq_line[0][0]
            if held < timer:
                timer = held
        if self._gap_due < timer:
            timer = self._gap_due
        if self._ack_hold and (next_ack := self._ack_hold.due()) is not None and next_ack < timer:
            timer = next_ack
        if self._fec_due < timer:
            timer = self._fec_due
        return None if timer == _INF else timer

    def statistics(self) -> SessionStatistics:
        """A frozen snapshot of the session, its paths and its reorder buffer."""
        compressor = self._compressor
        return SessionStatistics(
            session_id=self.session_id,
            role=self.role,
            closed=self._closed,
            scheduler=self._scheduler.name,
            reorder_timeout=self._reorder.timeout,
            packets_sent=self._packets_sent,
            bytes_sent=self._bytes_sent,
            packets_received=self._packets_received,
            packets_delivered=self._packets_delivered,
            bytes_delivered=self._bytes_delivered,
            send_no_path=self._send_no_path,
            send_queue_full=self._send_queue_full,
            send_rejected=self._send_rejected,
            queued_bytes=self._queued_bytes,
            queue_limit_bytes=self._queue_limit,
            queue_dropped=self._queue_dropped,
            early_dropped=self._early_dropped,
            early_marked=self._early_marked,
            early_drop_active=self.early_drop_active,
            failover_resent=self._failover_resent,
            failover_skipped=self._failover_skipped,
            failover_late=self._failover_late,
            path_info_sent=self._path_info_sent,
            path_info_applied=self._path_info_applied,
            rebalanced=self._rebalanced,
            nack_sent=self._nack_sent,
            nack_active=self._send_nacks,
            gaps_recovered=self._gaps_recovered
            + (self._nack.recovered if self._nack is not None else 0),
            gaps_abandoned=self._gaps_abandoned
            + (self._nack.abandoned if self._nack is not None else 0),
            nack_received=self._nack_received,
            retransmitted=self._retransmitted,
            retransmit_gone=self._retransmit_gone,
            fec_group=self._fec.group_size if self._fec is not None else 0,
            fec_parities=self._fec.parities if self._fec is not None else 0,
            fec_recovered=self._fec_decoder.recovered if self._fec_decoder is not None else 0,
            fragmented=self._fragmented,
            split=self._split,
            reassembled=self._reassembler.completed if self._reassembler is not None else 0,
            equalized=self._equalized + (self._ack_hold.held if self._ack_hold is not None else 0),
            equalize_delay=self._eq_spread * (ACK_HOLD_SHARE if self._eq_mode == "ack" else 1.0),
            equalize_overflow=self._equalize_overflow
            + (self._ack_hold.overflow if self._ack_hold is not None else 0),
            equalize_trials=self._bulk.trials if self._bulk is not None else 0,
            equalize_flows=len(self._bulk.marked) if self._bulk is not None else 0,
            equalize_ahead=self._bulk.ahead if self._bulk is not None else 0,
            equalize_ends=dict(self._bulk.ends) if self._bulk is not None else {},
            equalize_pairs=len(self._bulk_pairs) if self._bulk_pairs is not None else 0,
            equalize_paired=self._eq_paired,
            mss_clamped=self._mss_clamped,
            acks_filtered=self._acks_filtered,
            sparse_jumps=self._sparse_jumps,
            sparse_queued=self._sparse_queued,
            fair_waiting=self._fq_bytes,
            fair_flows=len(self._fq),
            peer_features=self._peer_features,
            compacted=compressor.compacted if compressor is not None else 0,
            compact_saved=compressor.saved if compressor is not None else 0,
            compact_contexts=len(compressor) if compressor is not None else 0,
            expanded=self._decompressor.expanded,
            bod_active=self._bod_active,
            datagrams_sent=self._datagrams_sent,
            datagrams_received=self._datagrams_received,
            drops=dict(self._drops),
            paths=tuple(self._paths[i].statistics() for i in sorted(self._paths)),
            reorder=self._reorder.statistics(),
        )

    # -- receive helpers ---------------------------------------------------------------

    def _receive_data(
        self,
        path: PathState,
        session_seq: int,
        bucket: int,
        bucket_seq: int,
        payload: bytes,
        tx: int,
        now: float,
        *,
        progress: bool = True,
        resent: bool = False,
    ) -> bool:
        """Accept one DATA; `progress` False (FLAG_JUMPED, FLAG_RESENT): it proves nothing
        about the DATA sent before it on its path (no mark, no path progress)."""
        # Feedback is about the path: a copy the session drops as a duplicate (redundant
        # scheduler, resend) still arrived on it and must be acknowledged, or the sender
        # takes the path for silent.
        self._arm_feedback(path, now)
        ref = self._rx_session_seq
        seq = ref + ((session_seq - ref + _HALF32) & MASK32) - _HALF32
        if not self._replay.check_and_update(seq):
            if ref - seq < SESSION_REPLAY_WINDOW:
                self._drops["duplicate"] += 1
                return False
            self._rx_stale += 1
            if self._rx_stale < RESYNC_AFTER:
                self._drops["duplicate"] += 1
                return False
            # Too old for a while: `ref` came from a corrupt datagram far ahead; resync.
            self._resync_session_seq(seq)
            ref = seq - 1
        self._rx_stale = 0
        nack = self._nack
        filled = False  # an awaited (NACKed) packet: lift the proof cap after the push
        if nack is not None:
            # Gaps are what in-order DATA skips (not a jumped or resent packet: the DATA
            # queued behind a jumped one is not missing, it follows on the same path).
            nref = self._rx_nack_ref
            if progress:
                if seq > nref + 1 and nref >= 0:
                    check = self._replay.check
                    for missing in range(max(nref + 1, seq - _MISSING_MAX), seq):
                        if check(missing):
                            nack.on_missing(missing, now)
                    if self._gap_due == _INF:
                        due = self._gap_due = now + _GAP_CHECK
                        if due < self._timer:
                            self._timer = due
                if seq > nref:
                    self._rx_nack_ref = seq
            if seq < nref or not progress:
                gap = nack.on_received(seq, resent=resent)
                if gap is not None:
                    if resent and gap.tries == 1:
                        sample = now - gap.last_nack
                        old = self._nack_rtt
                        self._nack_rtt = sample if old is None else old + (sample - old) / 8
                    self._gap_resolved(gap, 1 if resent else 0)
                    if gap.tries:
                        filled = True
        if seq > ref:
            self._rx_session_seq = seq
            marks_tx = self._marks_tx
            if marks_tx and tx < marks_tx[-1]:
                if marks_tx[-1] - tx > 1_000_000:  # a clock jump or a corrupt stamp
                    marks_tx.clear()
                    self._marks_seq.clear()
                else:
                    # Paced paths release later packets first at times: no mark (the
                    # earlier marks stay valid and sorted).
                    tx = -1
            if tx >= 0 and progress:
                marks_tx.append(tx)
                self._marks_seq.append(seq)
            if len(marks_tx) > _MARKS_LIMIT:
                del marks_tx[: _MARKS_LIMIT // 2]
                del self._marks_seq[: _MARKS_LIMIT // 2]
        self._packets_received += 1
        reorder = self._reorder
        if progress and seq > path.rx_session_seq:
            path.rx_session_seq = seq
            if nack is not None and len(nack) > nack.outstanding:
                self._nack_proven(now)
            reorder.on_path_progress(path.path_id, seq)
        if (self._eq_mode != "off" or self._eq_classes) and now >= self._eq_refresh:
            self._refresh_equalize(now)
        # With NACKs, real-time flows do not wait for resends (see ReorderBuffer).
        patient = not self._send_nacks or waits_for_resends(payload)
        if self._eq_target == -_INF and not self._eq_line:
            # "off", or nothing to hold (one path, equal delays): nothing parsed.
            reorder.push(bucket, bucket_seq, seq, payload, now=now, patient=patient)
        else:
            # The packet's delivery time: as if it had come over the slowest path.
            hold = self._eq_target - self._eq_owd
            mode = self._eq_mode
            if self._eq_classes:
                index = match_class(payload, self._classes)
                if index is not None and (own := self._class_equalize[index]) is not None:
                    mode = own  # (the class's "ack" or "off")
            if mode == "off":
                holds = False
            elif mode == "ack":
                # Nothing held here: this portal's ingress holds the acknowledgement.
                if self._ack_hold is not None:
                    cap = self.config.delay_cutoff
                    hold *= ACK_HOLD_SHARE  # (enough for BBR's window: see ackhold)
                    self._ack_hold.on_data(
                        payload, now + (hold if hold < cap else cap) if hold > 0.0 else now, now
                    )
                holds = False
            elif mode == "all":
                holds = True
            elif mode == "tcp":
                holds = is_tcp_data(payload)
            else:
                # "bulk": what the sender's ingress marked (FLAG_HOLD). An unmarked packet
                # of a flow with marked packets held ends its trial: those may leave.
                order = self._eq_order
                holds = self._eq_flag
                pairs = self._bulk_pairs
                acked = self._eq_acked
                if pairs is not None and (
                    (acked and now - acked.get(bucket, -_INF) < _EQ_ACKED_FORGET)
                    or (
                        not holds
                        and pairs
                        and order.get(bucket, -_INF) <= now  # (no trial to end first)
                        and pairs.knows(payload, now)
                    )
                ):
                    # A connection of a remembered pair (BulkPairs): "ack" for its life.
                    self._ack_remembered(bucket, payload, hold, now)
                    holds = False
                elif holds:
                    if len(order) > _EQ_ORDER_SWEEP:
                        for key in [k for k, t in order.items() if t < now]:
                            del order[key]
                    order[bucket] = now + self.config.delay_cutoff
                    if pairs is not None:
                        pairs.on_marked(bucket, payload, now)
                else:
                    if pairs is not None:
                        pairs.on_unmarked(bucket)
                    if order.pop(bucket, -_INF) > now:
                        self._let_go(bucket)
            if not holds:
                # Not held: with "tcp" not TCP or a pure acknowledgement; with "bulk" not
                # marked by the sender.
                reorder.push(
                    bucket, bucket_seq, seq, payload, now=now, tag=_EQ_EXEMPT, patient=patient
                )
            elif hold <= _EQUALIZE_EARLY and not self._eq_line:
                # Nothing to wait for (this came over the slowest path).
                reorder.push(bucket, bucket_seq, seq, payload, now=now, patient=patient)
            else:
                cap = self.config.delay_cutoff
                tag = now + (hold if hold < cap else cap) if hold > 0.0 else now
                reorder.push(bucket, bucket_seq, seq, payload, now=now, tag=tag, patient=patient)
            if hold <= _EQUALIZE_EARLY and progress and seq > self._eq_flush:
                # (it came on time: everything sent before it waited long enough)
                self._eq_flush = seq
            if self._eq_line:
                packets, tags, seqs, buckets = reorder.pop_ready_tagged(now=now)
                if packets:
                    self._equalize(packets, tags, seqs, buckets, now)
        if filled:
            self._update_proof_cap()
        decoder = self._fec_decoder
        if decoder is not None:
            for rebuilt, symbol in decoder.on_packet(seq, (bucket, bucket_seq, payload)):
                self._deliver_rebuilt(path, rebuilt, symbol, tx, now)
        return True

    def _uncompact(
        self, path: PathState, flags: int, bucket: int, payload: bytes, now: float
    ) -> bytes | None:
        """The inner packet of a *context* or *compact* DATA payload; None: dropped and
        counted (`compact_miss`: its context never came; `bad_compact`)."""
        try:
            if flags & FLAG_COMPACT:
                return self._decompressor.expand(
                    bucket, payload, bool(flags & FLAG_TRIMMED), bool(flags & FLAG_PACKED)
                )
            return self._decompressor.learn(bucket, payload)
        except ProtocolError as exc:
            self._drops[exc.reason] += 1
            # (It came on the path all the same: feedback counts it. A NACK, when on, asks
            # for it again, and a resend travels whole.)
            self._arm_feedback(path, now)
            return None

    def _arm_feedback(self, path: PathState, now: float) -> None:
        """DATA arrived on `path`: feedback now (every `feedback_every`) or soon."""
        pending = path.feedback_pending + 1
        if pending >= self._feedback_every:
            self._send_feedback(path, now)
        else:
            path.feedback_pending = pending
            if path.feedback_due is None:
                due = path.feedback_due = now + self._feedback_interval
                if due < self._timer:
                    self._timer = due

    def _resync_session_seq(self, seq: int) -> None:
        """Start the session_seq window, marks and path progress over at `seq`."""
        self._replay.reset()
        self._replay.update(seq)
        self._rx_nack_ref = -1
        self._marks_tx.clear()
        self._marks_seq.clear()
        for path in self._paths.values():
            path.rx_session_seq = NO_SESSION_SEQ
            self._reorder.forget_path(path.path_id)
        self._update_reorder_live()

    def _pass_by_time(self, path: PathState, tx: int) -> None:
        """A datagram sent at `tx` on `path`: it passed every DATA sent before it."""
        marks_tx = self._marks_tx
        if not marks_tx or tx <= marks_tx[0]:
            return
        index = len(marks_tx) - 1 if tx > marks_tx[-1] else bisect_left(marks_tx, tx) - 1
        seq = self._marks_seq[index]
        if seq > path.rx_session_seq:
            path.rx_session_seq = seq
            nack = self._nack
            if nack is not None and len(nack) > nack.outstanding:
                self._nack_proven(self._now)
            self._reorder.on_path_progress(path.path_id, seq)

    def _receive_control(self, path: PathState, frame: ControlFrame, now: float) -> None:
        kind = frame.kind
        if kind == ControlKind.HELLO:
            if not self._local:
                self._send_feedback(path, now)
        elif kind == ControlKind.CLOSE:
            self._end("peer")
        elif kind == ControlKind.PATH_INFO:
            if not self._local:
                self._apply_path_info(path, decode_path_info(frame.value), now)
        elif kind == ControlKind.FEATURES:
            (features,) = FEATURES_VALUE.unpack(frame.value)
            self._peer_features = features
            ready = self._peer_fills = self._fill_ready = self.config.probe_rates and bool(
                features & FEATURE_FILL
            )
            if ready:
                for usable in self._usable:
                    if not usable.queue and self._filling(usable, now):
                        self._fill(usable, now)
            compressor = self._compressor
            self._compress = compressor is not None and bool(features & FEATURE_COMPACT)
            if compressor is not None:
                compressor.trim = bool(features & FEATURE_TRIM)
                compressor.pack = bool(features & FEATURE_PACK)
                # (The peer sends FEATURES as a path comes up: it may have restarted and
                # lost its contexts.)
                compressor.reset()
        elif kind == ControlKind.PATH_DOWN:
            target = self._paths.get(frame.value[0])
            if target is None:
                return
            if self._local:
                if target.up:
                    self._path_down(target, now, "peer")
            else:
                # The site disabled or removed the link and no longer listens on it: what
                # waits in its queue here, and what it sent since the site let go, go on
                # the others (they used to vanish, uncounted, and the queue's bytes stayed
                # in the total that queue control reads).
                sent, stranded, lost_delay = self._take_stranded(target)
                del self._paths[target.path_id]
                self._left_off[target.path_id] = target.next_seq
                self._reorder.forget_path(target.path_id)
                self._rebuild_usable()
                self._update_reorder_live()
                if target.up:
                    self._events.append(PathDown(target.path_id, "peer"))
                if sent or stranded:
                    self._fail_over(sent, stranded, lost_delay, now)
                self._recompute_timer()

    def _apply_path_info(self, path: PathState, info: PathInfo, now: float) -> None:
        """Remote portal: the site's link behind `path` has this metric, standby flag and
        download rate (our sending rate hint). Applied when it changes, so a value set here
        by hand (`braid set ... path`) stays until the site's link changes."""
        if info == path.peer_info:
            return
        path.peer_info = info
        if info.rate_bps != path.rate_bps:
            path.cc.set_rate_hint(info.rate_bps / 8 if info.rate_bps else None, now)
            path.rate_bps = info.rate_bps
        path.metric = info.metric
        path.standby = info.standby
        self._path_info_applied += 1
        self._rebuild_usable()
        self._update_queue_limit()

    # -- send helpers ------------------------------------------------------------------

    def _emit(self, path_id: int, datagram: bytes) -> None:
        self._out.append((path_id, datagram))
        self._datagrams_sent += 1

    def _send_feedback(self, path: PathState, now: float) -> None:
        entry = path.feedback_entry(now)
        seq = path.on_datagram_sent(_FEEDBACK_SIZE, now, tracked=False)
        self._emit(
            path.path_id,
            encode_feedback(
                path.path_id, self.session_id, seq & MASK32, _stamp(path, seq, now), (entry,)
            ),
        )
        path.feedback_pending = 0
        path.feedback_due = None
        path.reported_lost = path.rx_highest + 1 - path.rx_received

    def _pass_due(self, path: PathState) -> float:
        """When `path` must send a pass PROBE (inf: not needed)."""
        last = path.last_send_time
        if not path.up or path.queue or last is None or self._last_data_time <= last:
            return _INF
        return last + self._pass_interval

    def _silence_timeout(self, path: PathState) -> float:
        """issue 6: how long a path may stay silent while an answer is due."""
        config = self.config
        timeout = config.silence_timeout_min
        if path.srtt is not None and path.rttvar is not None:
            timeout = max(timeout, 2 * path.srtt + 4 * path.rttvar + 2 * config.feedback_interval)
        return min(timeout, config.dead_interval)

    def _filling(self, path: PathState, now: float) -> bool:
        """`probe_rates`: whether `path` is to be filled with fill PROBEs now (a usable
        path finding its rate, for at most _FILL_FOR seconds, toward a peer that answers)."""
        if not (self._fill_ready and path.up and path.cc.finding_rate and path in self._usable):
            return False
        start = path.fill_from
        return start is None or (now - start < _FILL_FOR and path.fill_bytes < _FILL_BUDGET)

    def _fill(self, path: PathState, now: float) -> None:
        """Send fill PROBEs on `path` (its queue empty) as its pacer and window allow."""
        release = path.next_release
        if release - _QUANTUM > now:
            return
        floor = now - _BURST
        if release < floor:
            release = floor
        cc = path.cc
        tracker = path.tracker
        cwnd = cc.cwnd
        if tracker.inflight >= cwnd:
            return
        if path.fill_from is None:
            path.fill_from = now
        tracker.app_limited_until = 0  # (the path is kept full: its samples count)
        size = min(_FILL_SIZE, path.mtu)
        pad = size - HEADER_SIZE
        rate = min(cc.pacing_rate, _FILL_RATE_MAX)
        while (
            release - _QUANTUM <= now and tracker.inflight < cwnd and path.fill_bytes < _FILL_BUDGET
        ):
            self._send_probe(path, now, reply=False, padding=pad, fill=True)
            path.fill_bytes += size
            release += (size + _OVERHEAD) / rate
        path.next_release = release

    def _send_probe(
        self,
        path: PathState,
        now: float,
        *,
        reply: bool = True,
        padding: int = 0,
        fill: bool = False,
    ) -> int:
        """Send a PROBE (`padding` bytes of body: a path MTU probe); its path_seq (wire).

        A pass PROBE (no reply asked) stays in the send log although only later DATA
        feedback covers it: leaving it out made the scheduler load a path that only
        carried passes sooner, and cost 10 % over four unequal links (lab, A/B 3 x 3)."""
        seq = path.on_datagram_sent(HEADER_SIZE + padding, now, fill=fill)
        stamp = _stamp(path, seq, now)
        self._emit(
            path.path_id,
            encode_probe(
                path.path_id,
                self.session_id,
                seq & MASK32,
                stamp,
                reply_requested=reply,
                padding=padding,
            ),
        )
        return seq & MASK32

    def _send_control(
        self, path: PathState, kind: ControlKind, value: bytes, now: float, *, quiet: bool = False
    ) -> None:
        """`quiet`: the frame asks for no answer, so it is not in flight and does not put
        off the path's keepalive PROBE (FEATURES)."""
        last = path.last_send_time
        seq = path.on_datagram_sent(HEADER_SIZE + 1 + len(value), now, tracked=not quiet)
        if quiet:
            path.last_send_time = last
        self._emit(
            path.path_id,
            encode_control(
                path.path_id,
                self.session_id,
                seq & MASK32,
                _stamp(path, seq, now),
                kind,
                value,
            ),
        )

    def _send_hello(self, path: PathState, now: float) -> None:
        self._send_control(path, ControlKind.HELLO, b"", now)
        path.hello_due = now + self.config.hello_interval

    def _send_features(self, path: PathState, now: float) -> None:
        """Tell the peer what this portal does (FEATURES; it asks for no answer)."""
        value = FEATURES_VALUE.pack(self._features)
        self._send_control(path, ControlKind.FEATURES, value, now, quiet=True)

    def _send_path_info(self, path: PathState, now: float) -> None:
        """Tell the remote portal the link's metric, standby flag and download rate."""
        info = path.peer_info = _path_info(path)
        self._send_control(path, ControlKind.PATH_INFO, encode_path_info(info), now)
        self._path_info_sent += 1

    # -- state helpers -----------------------------------------------------------------

    def _get_path(self, path_id: int) -> PathState:
        path = self._paths.get(path_id)
        if path is None:
            raise ValueError(f"path_id: no path {path_id} in session {self.session_id:#010x}")
        return path

    def _path_up(self, path: PathState, now: float) -> None:
        path.up = True
        path.health_delivered = -1  # the next health check only takes a baseline
        if path.down_since is not None:
            # Returning: carry DATA only after a hold-down (longer while it flaps).
            hold = self.config.return_holddown
            if path.up_since is not None and path.down_since - path.up_since < _FLAP_WINDOW:
                hold = min(max(path.probation * 2, hold), _FLAP_HOLD_MAX * hold)
            path.probation = hold
            path.probation_until = now + hold
        path.up_since = now
        if path.awaiting is not None:
            # DATA sent on the path before it came up (the session's first packets, sent
            # while no path was up) is awaited from now on: the peer just showed it is
            # there. Counted from the send, the path went down as it came up when the
            # peer's first answers were lost.
            path.awaiting = now
        if self._carried_data:
            self._pmtu_start(path, now)
        if self._compressor is not None:
            # The peer may have restarted (all paths were down): define contexts again.
            self._compressor.reset()
        if self._features:
            # What this portal does, to the peer (again on every return: it may have
            # restarted). A portal that does none of it says nothing: the same to the peer.
            path.features_left = _INFO_REPEAT
            path.features_due = now
        if self._local and (path.peer_info is not None or _path_info(path) != PathInfo()):
            # Tell the remote portal about the link (again: it may have restarted, or a
            # change back to the defaults may have been lost while the path was down).
            path.info_left = _INFO_REPEAT
            path.info_due = now
        self._events.append(PathUp(path.path_id))
        self._rebuild_usable()
        self._update_reorder_live()
        self._recompute_timer()

    def _path_down(self, path: PathState, now: float, reason: str) -> None:
        path.up = False
        path.down_since = now
        path.probation_until = -_INF
        path.degraded_until = -_INF
        sent, stranded, lost_delay = self._take_stranded(path)
        path.cc.on_path_down(now)
        # Nothing arrived for dead_interval: if the peer restarted, its numbering starts
        # over; the first datagram tells (see PathState.on_datagram_received).
        path.rx_restart = True
        if self._local:
            path.hello_acked = False
            path.hello_due = now
        self._events.append(PathDown(path.path_id, reason))
        self._rebuild_usable()
        self._update_reorder_live()
        if sent or stranded:
            self._fail_over(sent, stranded, lost_delay, now)
        self._recompute_timer()

    def _take_stranded(
        self, path: PathState
    ) -> tuple[
        list[tuple[tuple[int, int, int, bytes, float], float | None]],
        list[tuple[int, int, int, bytes, float]],
        float,
    ]:
        """Empty a path that is going down: (what it sent that no feedback covers yet,
        with the send times; what it had queued; its one-way delay), for `_fail_over`.
        Not what NACK recovery already resent on another path (a cut link's losses are
        NACKed well before its silence timeout: sent twice, they took the remaining
        links' capacity twice and arrived late, after the flow's own retransmissions)."""
        rtx = self._rtx
        path_id = path.path_id
        if rtx is None:
            sent = list(path.unacked)
        else:
            sent = [
                entry for entry in path.unacked if not rtx.resent_elsewhere(entry[1][0], path_id)
            ]
            self._failover_skipped += len(path.unacked) - len(sent)
        sent_at = {entry[0]: entry[2] for entry in path.tracker.log} if sent else {}
        lost_delay = path_delay(path)
        queued = self._drop_queue(path)
        return [(item, sent_at.get(seq)) for seq, item in sent], queued, lost_delay

    def _fail_over(
        self,
        sent: list[tuple[tuple[int, int, int, bytes, float], float | None]],
        queued: list[tuple[int, int, int, bytes, float]],
        lost_delay: float,
        now: float,
    ) -> None:
        """Schedule again on the usable up paths what a path that went down (or was
        removed) had queued (`queued`) and what it had sent that no feedback covers
        (`sent`, with the send times), oldest first. With `earliest-arrival` everywhere,
        the DATA waiting in the other paths' queues is scheduled again with them (as in
        `_rebalance`), so the failover does not arrive behind newer DATA: put at the tail
        (before 2026-11-30), it reached the egress after the gaps it filled had been
        skipped, and kept the newer DATA of the other paths waiting behind it.

        A sent packet of a patient flow (TCP, a large datagram: `waits_for_resends`) goes
        again only if it can arrive before the egress gives up waiting for it
        (`failover_late` otherwise; the flow's own transport resends it): the egress
        skips a gap once the packet after it has waited its reorder timeout, and that
        packet arrived about when the lost one would have (the paths are scheduled for
        it), `lost_delay` (the dead path's one-way delay) after the send. The peer's
        timeout is estimated by this portal's own for the other direction (the same
        delays, the same rule), plus a margin. While NACK recovery holds the gaps, the
        egress waits longer, and so does this portal's estimate; without it, most of a
        cut link's last 0.3 s (its silence timeout) is past saving: in one lab cut, 464
        of 618 copies arrived late, and took the remaining link for 0.4 s. A small
        datagram, ICMP or DSCP EF goes late all the same: it costs little, and a late
        DNS answer or ping reply still beats the client's timeout."""
        paths = [p for p in self._usable if p.up]
        if not paths:
            self._queue_dropped += len(queued)  # (no path up: nowhere to send them)
            return
        scheduler = self._scheduler
        # (item, send time, kind: 0 sent on the dead path, 1 queued there, 2 queued on
        # another path)
        candidates = [(item, -_INF if at is None else at, 0) for item, at in sent]
        candidates.extend((item, _INF, 1) for item in queued)
        if self._reschedulable() and len(paths) > 1:
            candidates.extend((item, _INF, 2) for item in self._take_unsent(paths))
        newest = self._tx_session_seq
        candidates.sort(key=lambda entry: (entry[0][0] - newest) & MASK32)  # oldest first
        patience = lost_delay + self._reorder.timeout + _FAILOVER_MARGIN
        late = 0
        for item, sent_at, kind in candidates:
            size = len(item[3])
            target = scheduler.select_path(paths, size, item[1], now=now) or paths[0]
            if not kind:
                arrival = now + queue_delay(target, size, now) + path_delay(target)
                if arrival > sent_at + patience and (
                    type(item[3]) is _Piece or waits_for_resends(item[3])
                ):
                    late += 1
                    continue
                self._failover_resent += 1
            elif kind == 1:
                self._failover_resent += 1
            self._enqueue(target, item, now)
        self._failover_late += late
        for path in paths:
            if path.queue:
                self._release(path, now)

    def _end(self, reason: str) -> None:
        self._closed = True
        self._events.append(SessionClosed(reason))

    def _rebuild_usable(self) -> None:
        before = self._usable
        paths = [self._paths[i] for i in sorted(self._paths)]
        now = self._now
        pool = (
            [p for p in paths if p.up and p.probation_until <= now and p.degraded_until == -_INF]
            or [p for p in paths if p.up and p.probation_until <= now]
            or [p for p in paths if p.up]
            or paths
        )
        if not pool:
            self._usable = ()
            return
        # Early drop is quiet while a path is down (up to _EARLY_QUIET_MAX), through its
        # hold-down when it returns, and for _EARLY_QUIET_AFTER once it carries DATA again.
        down = [
            p.down_since for p in paths if not p.up and not p.standby and p.down_since is not None
        ]
        held = [p.probation_until for p in paths if p.up and p.probation_until != -_INF]
        if down:
            quiet = max(down) + _EARLY_QUIET_MAX
        elif held:
            quiet = max(held) + _EARLY_QUIET_AFTER
        elif self._early_quiet_until > now:
            quiet = min(self._early_quiet_until, now + _EARLY_QUIET_AFTER)
        else:
            quiet = -_INF
        self._early_quiet_until = quiet
        best = min(p.metric for p in pool)
        usable = [p for p in pool if p.metric == best]
        if not self._bod_active:
            usable = [p for p in usable if not p.standby] or usable
        self._usable = tuple(usable)
        self._update_queue_limit()  # (and the paths' holds, with delay_floor)
        if len(usable) > 1 and any(
            p not in before and (p.down_since is not None or p.standby) for p in usable
        ):
            # A path came back or a standby link joined (not the paths coming up one by one
            # at the start: the scheduler's estimates are still guesses then).
            self._rebalance(self._now)

    def _reschedulable(self) -> bool:
        """Whether queued DATA may be scheduled again over other paths: only with
        `earliest-arrival` everywhere (a `redundant` copy must stay on its own path)."""
        return isinstance(self._scheduler, EarliestArrivalScheduler) and all(
            s is None or isinstance(s, EarliestArrivalScheduler) for s in self._class_schedulers
        )

    def _take_unsent(self, paths: list[PathState]) -> list[tuple[int, int, int, bytes, float]]:
        """Take the DATA waiting in `paths`' queues out, to be scheduled again; flagged DATA
        (jumped, resent) and split pieces stay where they are."""
        moved: list[tuple[int, int, int, bytes, float]] = []
        for path in paths:
            queue = path.queue
            flagged = path.flagged
            kept: list[tuple[int, int, int, bytes, float]] = []
            taken: list[tuple[int, int, int, bytes, float]] = []
            for item in queue:
                (kept if item[0] in flagged or type(item[3]) is _Piece else taken).append(item)
            if taken:
                self._unqueued(path, taken)
                moved += taken
                queue.clear()
                queue.extend(kept)
        return moved

    def _rebalance(self, now: float) -> None:
        """A path joined the usable set (back from a cut, its hold-down over, or a standby
        link called in): the DATA waiting in the other paths' queues, which nothing has
        sent yet, is scheduled again over all of them, oldest first. The new path takes
        its share of the backlog at once, and nothing queued before the join reaches the
        egress after what is sent on the new path (the gap it would leave outlasts the
        reorder timeout: the egress cannot see a sender's queue). Only with
        `earliest-arrival` everywhere (a `redundant` copy must stay on its own path);
        flagged DATA (jumped, resent) and split pieces stay where they are."""
        scheduler = self._scheduler
        if not self._reschedulable():
            return
        paths = [p for p in self._usable if p.up]
        if len(paths) < 2:
            return
        moved = self._take_unsent(paths)
        if not moved:
            return
        newest = self._tx_session_seq
        moved.sort(key=lambda item: (item[0] - newest) & MASK32)  # oldest first (wraps)
        for item in moved:
            target = scheduler.select_path(paths, len(item[3]), item[1], now=now)
            assert target is not None  # (None only when given no path)
            self._enqueue(target, item, now)
        self._rebalanced += len(moved)
        for path in paths:
            if path.queue:
                self._release(path, now)

    def _check_health(self, now: float) -> None:
        """Degraded paths (see `SessionConfig.degraded_loss` / `degraded_rtt`)."""
        config = self.config
        self._health_due = now + config.health_interval
        up = [p for p in self._paths.values() if p.up]
        rtts = [p.srtt for p in up if p.srtt is not None and p.degraded_until == -_INF]
        best_rtt = min(rtts) if rtts else None
        changed = False
        sum_lost = 0
        sum_total = 0
        for path in up:
            if path.health_delivered < 0:
                # (Just up: feedback about what it lost while down is still arriving.)
                path.health_delivered = path.delivered
                path.health_lost = path.lost
                continue
            delivered = path.delivered - path.health_delivered
            lost = path.lost - path.health_lost
            total = delivered + lost
            degraded = path.degraded_until != -_INF
            if total >= _HEALTH_MIN_SAMPLES or (degraded and total >= _HEALTH_MIN_SAMPLES // 4):
                path.health_delivered = path.delivered
                path.health_lost = path.lost
                # Losses of an interval in which the controller lowered its estimate were
                # its own overshoot (the link's capacity fell, its queue overflowed), not a
                # bad link: they do not degrade the path.
                adjustments = path.cc.adjustments
                overshoot = adjustments != path.health_adjustments
                path.health_adjustments = adjustments
                sum_lost += max(lost, 0)
                sum_total += total
                loss = max(lost, 0) / total
                excess = (
                    path.srtt - best_rtt if path.srtt is not None and best_rtt is not None else 0.0
                )
                if not degraded and (
                    (loss > config.degraded_loss and not overshoot) or excess > config.degraded_rtt
                ):
                    path.degraded_until = _INF
                    self._degraded_count += 1
                    changed = True
                elif degraded and (
                    loss < config.degraded_loss / 2 and excess < config.degraded_rtt / 2
                ):
                    path.degraded_until = -_INF
                    changed = True
        if changed:
            self._rebuild_usable()
        if self._nack_mode == "auto":
            self._auto_nack(sum_lost, sum_total, up)
        fec = self._fec
        if fec is not None and sum_total:
            # issue 7: the group size follows the loss the paths report (smoothed).
            self._send_loss += (sum_lost / sum_total - self._send_loss) / 2
            k = choose_group_size(self._send_loss)
            fec.set_group_size(k if k or self._fec_mode != "on" else _FEC_CLEAN_GROUP)

    def _check_bod(self, now: float) -> None:
        """Bandwidth on demand: bring standby paths in or out by the others' utilisation."""
        config = self.config
        interval = config.bod_interval + (now - self._bod_due)
        self._bod_due = now + config.bod_interval
        sent = self._bod_sent
        self._bod_sent = 0
        full = self._send_queue_full != self._bod_full
        self._bod_full = self._send_queue_full
        capacity = sum(
            p.cc.btl_bw for p in self._paths.values() if p.up and not p.standby and p.metric == 0
        )
        if not any(p.standby for p in self._paths.values()) or capacity <= 0:
            return
        utilisation = 1.0 if full else sent / (capacity * interval)
        if not self._bod_active and utilisation > config.bod_upper:
            self._bod_active = True
            self._rebuild_usable()
        elif self._bod_active and utilisation < config.bod_lower:
            self._bod_active = False
            self._rebuild_usable()

    def _update_reorder_live(self) -> None:
        live = self._live_paths = tuple(p for p in self._paths.values() if p.up)
        self._reorder.set_live_paths(p.path_id for p in live)

    def _adapt_reorder_timeout(self) -> None:
        spread, jitter = _delay_spread(p for p in self._paths.values() if p.up)
        if spread is None:
            return
        config = self.config
        # A quarter more than the spread: pacer queues drain within ~12 % of the rate the
        # scheduler predicted (the congestion controller's probing cycle).
        timeout = spread * 1.25 + config.reorder_jitter_factor * jitter
        timeout = min(max(timeout, config.reorder_timeout_min), config.reorder_timeout_max)
        self._reorder.impatient_timeout = timeout
        nack = self._nack
        if nack is not None and self._send_nacks:
            # issue 7: a gap NACKed at the latest after this timeout waits one more round
            # trip of the fastest path (its resend comes back on it) before it is skipped.
            # The resend's round trip: measured (NACK to resend), else the fastest path's
            # RTT (a portal that only receives has none), else assume the worst.
            self._nack_after = timeout
            rtt = self._nack_rtt
            if rtt is None:
                rtt = min(
                    (p.srtt for p in self._live_paths if p.srtt is not None),
                    default=config.reorder_timeout_max,
                )
            # Two rounds: a resend lost on its way (or its NACK) is asked for again.
            timeout = min(
                timeout + 2 * self._gap_interval + rtt * 2.5 + 0.01,
                config.reorder_timeout_max,
            )
            nack.retry_interval = rtt * 1.2 + 0.005
            nack.deadline = timeout
        self._reorder.timeout = timeout

    # -- issue 7: NACK retransmission ----------------------------------------------------

    def _receive_nack(self, path: PathState, frame: NackFrame, now: float) -> None:
        if frame.gone:
            # Egress: the sender cannot resend these; stop holding their flows.
            nack = self._nack
            if nack is None:
                return
            ref = self._rx_session_seq
            for value in frame.seqs:
                gap = nack.abandon(ref + ((value - ref + _HALF32) & MASK32) - _HALF32)
                if gap is not None:
                    self._gap_resolved(gap, 1)
            self._update_proof_cap()
            return
        # Sender: resend what we still have at the head of the fastest path.
        self._nack_received += len(frame.seqs)
        rtx = self._rtx
        if rtx is None:
            items: list[tuple[int, int, int, bytes, float]] = []
            gone = list(frame.seqs)
        else:
            items, gone = rtx.on_nack(list(frame.seqs), now)
        paths = [p for p in self._usable if p.up]
        touched: dict[int, PathState] = {}
        scheduler = self._scheduler
        for item in items:
            session_seq, bucket, _, ip_packet, _ = item
            size = len(ip_packet)
            if not paths or self._rtx_tokens < size:
                gone.append(session_seq)
                continue
            self._rtx_tokens -= size
            self._retransmitted += 1
            # Where it arrives first, at the head of the queue (earliest-arrival), else
            # on the path with the lowest RTT.
            target = (
                scheduler.select_path(paths, size, bucket, now=now, head=True)
                if isinstance(scheduler, EarliestArrivalScheduler)
                else self._fastest_path()
            ) or paths[0]
            self._enqueue(target, item, now, flag=FLAG_RESENT)
            assert rtx is not None
            rtx.on_resent(session_seq, target.path_id)
            touched[target.path_id] = target
        for target in touched.values():
            self._release(target, now)
        if gone:
            self._retransmit_gone += len(gone)
            for start in range(0, len(gone), MAX_NACK_ENTRIES):
                self._send_nack(path, gone[start : start + MAX_NACK_ENTRIES], now, gone=True)

    def _fastest_path(self) -> PathState | None:
        """The usable up path with the lowest smoothed RTT (resends and NACKs go there)."""
        best: PathState | None = None
        best_rtt = _INF
        for path in self._usable or self._live_paths:
            if not path.up:
                continue
            rtt = path.srtt if path.srtt is not None else 10.0
            if rtt < best_rtt:
                best, best_rtt = path, rtt
        return best

    def _send_nack(self, path: PathState, seqs: list[int], now: float, *, gone: bool) -> None:
        seq = path.on_datagram_sent(HEADER_SIZE + 1 + 4 * len(seqs), now)
        self._emit(
            path.path_id,
            encode_nack(
                path.path_id, self.session_id, seq & MASK32, _stamp(path, seq, now), seqs, gone=gone
            ),
        )

    def _nacks_out(self, seqs: list[int], now: float) -> None:
        """Send NACKs for `seqs` (already marked in the tracker) on the two fastest paths
        (a NACK lost on one link still arrives; the sender resends once)."""
        ranked = sorted(
            (p for p in (self._usable or self._live_paths) if p.up),
            key=lambda p: p.srtt if p.srtt is not None else 10.0,
        )[:2]
        if not ranked:
            return
        self._nack_sent += len(seqs)
        for path in ranked:
            for start in range(0, len(seqs), MAX_NACK_ENTRIES):
                self._send_nack(path, seqs[start : start + MAX_NACK_ENTRIES], now, gone=False)

    def _nack_proven(self, now: float) -> None:
        """NACK the open gaps every live path has passed (before the reorder buffer sees
        the progress: it then holds them for the resend instead of skipping them)."""
        live = self._live_paths
        if not live or not self._send_nacks:
            return
        threshold = min(p.rx_session_seq for p in live)
        nack = self._nack
        assert nack is not None
        seqs = nack.nack_through(threshold, now)
        if seqs:
            self._nacks_out(seqs, now)
            self._update_proof_cap()

    def _auto_nack(self, sent_lost: int, sent_total: int, up: list[PathState]) -> None:
        """`nack = "auto"`: switch the resend buffer by the loss FEEDBACK reports on the
        paths (what we send), and NACKs by the loss on what arrives."""
        config = self.config
        count = _auto_count(self._auto_tx, sent_lost, sent_total, self._rtx is not None)
        self._auto_tx = count
        self._start_tx = _auto_start(self._start_tx, sent_lost, sent_total)
        if count >= NACK_AUTO_ON_INTERVALS and self._rtx is None:
            self._rtx = RetransmitBuffer(config.retransmit_packets, config.retransmit_age)
            self._auto_tx = 0
        elif count <= -_auto_off(self._start_tx) and self._rtx is not None:
            self._rtx = None
            self._auto_tx = 0
            self._start_tx = -1
        lost = total = 0
        marks = self._rx_marks
        for path in up:
            mark = marks.get(path.path_id)
            highest, received = path.rx_highest, path.rx_received
            marks[path.path_id] = (highest, received)
            if mark is None or highest < mark[0] or received < mark[1]:
                continue  # (new, or the peer restarted its numbering)
            expected = highest - mark[0]
            lost += max(expected - (received - mark[1]), 0)
            total += expected
        active = self._send_nacks
        count = _auto_count(self._auto_rx, lost, total, active)
        self._auto_rx = count
        self._start_rx = _auto_start(self._start_rx, lost, total)
        if count >= NACK_AUTO_ON_INTERVALS and not active:
            self._auto_rx = 0
            self._send_nacks = True
            if self._nack is None:
                self._nack = NackTracker(deadline=config.reorder_timeout_max)
                self._rx_nack_ref = -1  # gaps from the next DATA on
        elif count <= -_auto_off(self._start_rx) and active:
            self._auto_rx = 0
            self._start_rx = -1
            self._send_nacks = False
            nack = self._nack
            if nack is not None and self._trace is None:
                self._gaps_recovered += nack.recovered
                self._gaps_abandoned += nack.abandoned
                self._nack = None
                self._gap_due = _INF
            self._reorder.set_proof_cap(None)

    def _update_proof_cap(self) -> None:
        nack = self._nack
        assert nack is not None
        self._reorder.set_proof_cap(nack.lowest_outstanding())

    def _gap_resolved(self, gap: Gap, label: int) -> None:
        """A gap ended: a loss (1: resent, abandoned) or a late packet (0)."""
        self._gap_loss += (label - self._gap_loss) / 32
        trace = self._trace
        samples = gap.samples
        if trace is not None and samples and len(trace) < _TRACE_LIMIT:
            trace.extend((x, label) for x in samples)

    def _check_gaps(self, now: float) -> None:
        """Retries, deadlines, and the NACK decision for open gaps (predictor or timeout)."""
        nack = self._nack
        assert nack is not None
        again, stale = nack.retries_and_expiry(now)
        for _, gap in stale:
            self._gap_resolved(gap, 1)
        send = again
        live = self._live_paths
        model = self._model
        trace = self._trace
        if live and (self._send_nacks or trace is not None):
            measured, jitter = _delay_spread(live)
            spread = measured if measured is not None and measured > 0 else 0.0
            elapsed = now - self._interval_at
            if elapsed >= 0.05:
                # Datagram rate of each live path since the last sample: the slowest one's
                # interval bounds how soon a gap can be proven.
                counts = self._interval_counts
                longest = 0.0
                for path in live:
                    got = path.datagrams_received - counts.get(path.path_id, 0)
                    counts[path.path_id] = path.datagrams_received
                    gap_interval = elapsed / got if got > 0 else 0.1
                    if gap_interval > longest:
                        longest = gap_interval
                self._gap_interval = min(longest, 0.1)
                self._interval_at = now
            interval = self._gap_interval
            count = len(live)
            progress = [p.rx_session_seq for p in live]
            loss = self._gap_loss
            wait = self._nack_after + 2 * interval
            decided: list[int] = []
            for scanned, (seq, gap) in enumerate(nack.open_gaps()):
                if scanned >= _GAP_SCAN:
                    break
                age = now - gap.seen
                if model is not None or trace is not None:
                    passed = sum(1 for value in progress if value >= seq) / count
                    x = features(age, spread, jitter, passed, loss, interval)
                    if trace is not None:
                        samples = gap.samples
                        if samples is None:
                            samples = gap.samples = []
                        if len(samples) < _TRACE_PER_GAP:
                            samples.append(x)
                    if model is not None and model.is_loss(x):
                        decided.append(seq)
                        continue
                if age >= wait:  # the timeout rule, with or without a model
                    decided.append(seq)
            if self._send_nacks:
                for seq in decided:
                    nack.mark(seq, now)
                send = send + decided
        if send and self._send_nacks:
            self._nacks_out(send, now)
        if send or stale:
            self._update_proof_cap()
        self._gap_due = now + _GAP_CHECK if len(nack) else _INF

    # -- issue 7: path MTU and fragments ------------------------------------------------

    def _start_pmtu(self, path: PathState, now: float) -> None:
        pmtu = path.pmtu = PathMtu(self.config.max_datagram, now=now)
        _set_mtu(path, pmtu.mtu)

    def _pmtu_start(self, path: PathState, now: float) -> None:
        """The path carries DATA: confirm its MTU, and every other up path's (probe at
        once; `_path_up` starts the paths that come up later). A flow that spreads onto the
        slower paths later finds them confirmed."""
        self._carried_data = True
        for other in self._paths.values():
            pmtu = other.pmtu
            if pmtu is not None and (other is path or other.up) and not pmtu.started:
                pmtu.start(now)
                if now < self._timer:
                    self._timer = now

    def _probe_timeout(self, path: PathState) -> float:
        """How long a path MTU probe is waited for."""
        srtt = path.srtt
        if srtt is None:  # (a path whose large DATA all vanish has few RTT samples)
            srtt = min((p.srtt for p in self._live_paths if p.srtt is not None), default=0.1)
            return max(0.25, 3 * srtt)
        return max(0.1, 2 * srtt + 4 * (path.rttvar or 0.0) + self._feedback_interval)

    def _send_fragments(
        self,
        path: PathState,
        item: tuple[int, int, int, bytes, float],
        flags: int,
        tx: int,
        now: float,
        app_limited: bool,
    ) -> tuple[int, int]:
        """Send `item` as FRAG datagrams: its pieces that fit the path's MTU, or the one
        piece it is (`_Piece`, split across paths). (Wire bytes with link overhead, the
        last path_seq); (0, -1) if it needs more than 64 fragments."""
        session_seq, bucket, bucket_seq, ip_packet, _ = item
        if type(ip_packet) is _Piece:
            pieces = [Fragment(session_seq, ip_packet.piece, 2, bytes(ip_packet))]
        else:
            try:
                pieces = split(ip_packet, path.mtu - FRAG_HEADER_SIZE, session_seq)
            except ValueError:  # (more than 64 pieces)
                self._send_rejected += 1
                return 0, -1
            self._fragmented += 1
        total = 0
        path_seq = -1
        path_id = path.path_id
        tracker = path.tracker
        out = self._out
        for piece in pieces:
            path_seq = path.next_seq
            path.next_seq = path_seq + 1
            out.append(
                (
                    path_id,
                    encode_frag(
                        path_id,
                        self.session_id,
                        path_seq & MASK32,
                        tx,
                        session_seq,
                        bucket,
                        bucket_seq,
                        piece.index,
                        piece.count,
                        piece.data,
                        flags=flags,
                    ),
                )
            )
            wire = FRAG_HEADER_SIZE + len(piece.data) + _OVERHEAD
            total += wire
            tracker.on_sent(path_seq, wire, now, app_limited)
            path.datagrams_sent += 1
        return total, path_seq

    def _split_pair(
        self,
        paths: tuple[PathState, ...],
        scheduler: EarliestArrivalScheduler,
        size: int,
        bucket: int,
        now: float,
    ) -> tuple[PathState, PathState, int] | None:
        """Where to split a packet of `size` bytes (the two paths where its halves arrive
        first, and the cut, by their rates), if every usable path is slower than
        `split_below`, both have empty queues (a sparse packet keeps its priority) and
        the pieces finish sooner than the whole packet on the best path; else None."""
        limit = self._split_below
        if any(p.cc.btl_bw >= limit for p in paths):
            return None
        first = scheduler.select_path(paths, size // 2, bucket, now=now)
        second = scheduler.select_path(
            [p for p in paths if p is not first], size // 2, bucket, now=now
        )
        if first is None or second is None or first.queue or second.queue:
            return None
        rates = [first.cc.btl_bw * 8, second.cc.btl_bw * 8]
        waits = [
            queue_delay(first, 0, now) + path_delay(first),
            queue_delay(second, 0, now) + path_delay(second),
        ]
        if not split_lowers_latency(size, rates, waits, FRAG_HEADER_SIZE + _OVERHEAD):
            return None
        cut = max(1, min(size - 1, round(size * rates[0] / (rates[0] + rates[1]))))
        return first, second, cut

    def _enqueue(
        self,
        path: PathState,
        item: tuple[int, int, int, bytes, float],
        now: float,
        *,
        flag: int = 0,
    ) -> None:
        """Queue `item` on `path` with the session's accounting (queued bytes, the flow's
        backlog). With `flag` (FLAG_JUMPED, FLAG_RESENT) it goes to the head of the queue
        with the head's schedule time (control stamps rely on it) and is sent flagged."""
        session_seq, bucket, bucket_seq, ip_packet, _ = item
        queue = path.queue
        if flag:
            queue.appendleft(
                (session_seq, bucket, bucket_seq, ip_packet, queue[0][4] if queue else now)
            )
            path.flagged[session_seq] = flag
        else:
            queue.append(item)
        size = len(ip_packet)
        path.queued_bytes += size
        self._queued_bytes += size
        self._backlog[bucket] = self._backlog.get(bucket, 0) + 1

    def _receive_frag(self, path: PathState, frame: FragFrame, tx: int, now: float) -> None:
        self._arm_feedback(path, now)
        reassembler = self._reassembler
        if reassembler is None:
            reassembler = self._reassembler = Reassembler(timeout=self.config.reorder_timeout_max)
        ref = self._rx_session_seq
        key = ref + ((frame.session_seq - ref + _HALF32) & MASK32) - _HALF32
        packet = reassembler.on_fragment(Fragment(key, frame.index, frame.count, frame.data), now)
        if packet is not None:
            self._receive_data(
                path,
                frame.session_seq,
                frame.bucket,
                frame.bucket_seq,
                packet,
                tx,
                now,
                progress=not (frame.jumped or frame.resent),
                resent=frame.resent,
            )

    # -- issue 7: FEC -------------------------------------------------------------------

    def _send_parity(self, parity: Parity, now: float) -> None:
        """Send a parity where it arrives first, charged to that path's pacer."""
        paths = [p for p in self._usable if p.up] or list(self._usable)
        if not paths:
            return
        size = HEADER_SIZE + 3 + 4 * len(parity.seqs) + len(parity.data)
        scheduler = self._scheduler
        path = (
            scheduler.select_path(paths, size, 0, now=now, head=True)
            if isinstance(scheduler, EarliestArrivalScheduler)
            else None
        ) or min(paths, key=lambda p: p.next_release)
        seq = path.on_datagram_sent(size, now)
        self._emit(
            path.path_id,
            encode_fec(
                path.path_id,
                self.session_id,
                seq & MASK32,
                _stamp(path, seq, now),
                parity.seqs,
                parity.length_xor,
                parity.data,
            ),
        )
        _charge_pacer(path, size, now)

    def _receive_fec(self, path: PathState, frame: FecFrame, tx: int, now: float) -> None:
        decoder = self._fec_decoder
        if decoder is None:
            decoder = self._fec_decoder = FecDecoder(
                _symbol_bytes, timeout=self.config.reorder_timeout_max
            )
        ref = self._rx_session_seq
        seqs = tuple(ref + ((s - ref + _HALF32) & MASK32) - _HALF32 for s in frame.seqs)
        if len(set(seqs)) != len(seqs):
            self._drops["bad_length"] += 1
            return
        for rebuilt, symbol in decoder.on_parity(Parity(seqs, frame.length_xor, frame.data), now):
            self._deliver_rebuilt(path, rebuilt, symbol, tx, now)

    def _deliver_rebuilt(
        self, path: PathState, seq: int, symbol: bytes, tx: int, now: float
    ) -> None:
        """A packet rebuilt from a parity: received like a resend (no path progress)."""
        if len(symbol) <= _SYMBOL.size:
            return  # nothing of a packet (a corrupt parity: the AEAD passed, the peer erred)
        bucket, bucket_seq = _SYMBOL.unpack_from(symbol)
        self._receive_data(
            path,
            seq & MASK32,
            bucket,
            bucket_seq,
            symbol[_SYMBOL.size :],
            tx,
            now,
            progress=False,
            resent=True,
        )

    def take_gap_trace(self) -> list[tuple[list[float], int]]:
        """The (features, label) samples recorded since the last call (`gap_trace`)."""
        trace = self._trace
        if not trace:
            return []
        self._trace = []
        return trace

    def _recompute_timer(self) -> None:
        """The earliest deadline of all paths (see handle_timer for the same expressions)."""
        if self._closed:
            self._timer = _INF
            return
        config = self.config
        local = self._local
        timer = _INF
        if config.idle_timeout is not None:
            timer = self._last_receive + config.idle_timeout
        for path in self._paths.values():
            if path.feedback_due is not None and path.feedback_due < timer:
                timer = path.feedback_due
            if path.probation_until != -_INF and path.probation_until < timer:
                timer = path.probation_until
            if path.up and path.last_receive_time is not None:
                timer = min(timer, path.last_receive_time + config.dead_interval)
            if path.up and path.awaiting is not None:  # issue 6: silence timeout
                timer = min(
                    timer,
                    path.awaiting + self._silence_timeout(path),
                )
            if path.features_left:
                timer = min(timer, path.features_due)
            if not local:
                continue
            if not path.hello_acked:
                timer = min(timer, path.hello_due)
            else:
                timer = min(timer, _keepalive_ref(path) + config.keepalive_interval)
            if path.info_left:
                timer = min(timer, path.info_due)
        if self._health_due < timer and len(self._paths) > 1:
            timer = self._health_due
        for path in self._paths.values():
            if path.pmtu is not None and path.up:
                timer = min(timer, path.pmtu.next_event(self._probe_timeout(path)))
        self._timer = timer


class _Piece(bytes):
    """One of the two pieces of a packet split across paths (`split_below`)."""

    piece: int
    """0 or 1."""

    def __new__(cls, data: bytes, piece: int) -> _Piece:
        made = super().__new__(cls, data)
        made.piece = piece
        return made


def _charge_pacer(path: PathState, size: int, now: float) -> None:
    """A large datagram sent outside the queue (a path MTU probe, a FEC parity) delays
    the path's next DATA by its transmission time, which the scheduler then sees (a
    1.4 kB probe is 6 ms of a 2 Mbit/s link)."""
    rate = path.cc.pacing_rate
    if rate > 0:
        path.next_release = max(path.next_release, now) + (size + _OVERHEAD) / rate


def _auto_count(count: int, lost: int, total: int, active: bool) -> int:
    """One health interval of `nack = "auto"`: the run of intervals for turning the switch
    over (> 0: to on, < 0: to off), given `lost` of `total` datagrams."""
    if total < NACK_AUTO_MIN_SAMPLES:
        return count
    if not active:
        return count + 1 if _lossy(lost, total) else 0
    return count - 1 if lost / total < NACK_AUTO_OFF else 0


def _lossy(lost: int, total: int) -> bool:
    """An interval whose loss would turn `nack = "auto"` on (NACK_AUTO_ON)."""
    return lost / total >= NACK_AUTO_ON and lost >= NACK_AUTO_MIN_LOST


def _auto_start(run: int, lost: int, total: int) -> int:
    """One health interval of the start of `nack = "auto"` (`run` lossy intervals in a
    row, -1 once the start is over): NACK_AUTO_ON_INTERVALS lossy ones end it."""
    if run < 0 or total < NACK_AUTO_MIN_SAMPLES:
        return run
    if _lossy(lost, total):
        run += 1
        return -1 if run >= NACK_AUTO_ON_INTERVALS else run
    return 0


def _auto_off(start: int) -> int:
    """Clean intervals in a row that turn `nack = "auto"` off (fewer at the start)."""
    return NACK_AUTO_START_OFF_INTERVALS if start >= 0 else NACK_AUTO_OFF_INTERVALS


def _delay_spread(paths: Iterable[PathState]) -> tuple[float | None, float]:
    """(max smoothed - min windowed-min relative one-way delay, largest jitter) of the
    paths; the spread is None before any of them has a delay sample."""
    low = _INF
    high = -_INF
    jitter = 0.0
    for path in paths:
        if path.owd is not None:
            owd_min = path.owd_min.value
            if owd_min is not None and owd_min < low:
                low = owd_min
            if path.owd > high:
                high = path.owd
            if path.jitter > jitter:
                jitter = path.jitter
    if high == -_INF or low == _INF:
        return None, jitter
    return high - low, jitter


def _set_mtu(path: PathState, mtu: int) -> None:
    """Set a path's MTU and the factor by which fragments inflate what it carries (the
    scheduler's arrival estimates use it: a full-size packet costs more on that path)."""
    if mtu != path.mtu:
        path.mtu = mtu
        room = mtu - FRAG_HEADER_SIZE
        # Packets larger than the MTU (the usual full-size ones) gain a FRAG header and
        # the link overhead per extra fragment.
        path.wire_factor = (
            1.0 if mtu >= NO_LIMIT or room <= 0 else 1.0 + (FRAG_HEADER_SIZE + _OVERHEAD) / room
        )


def _symbol_bytes(item: tuple[int, int, bytes]) -> bytes:
    """The FEC symbol of a received DATA (bucket, bucket_seq, payload)."""
    return _SYMBOL.pack(item[0], item[1]) + item[2]


def _stamp(path: PathState, seq: int, now: float) -> int:
    """The tx stamp (wire value) of a control datagram with path_seq `seq` sent now."""
    stamp = int(now * 1_000_000)
    queue = path.queue
    if queue:
        # DATA is still queued on this path: stamp it just before the oldest was scheduled,
        # so that "sent after D" (a gap proof at the egress) stays true.
        stamp = min(stamp, int(queue[0][4] * 1_000_000) - 1)
        path.backdated.add(seq)
    return stamp & MASK32


def _inflight_expiry(path: PathState) -> float:
    srtt = path.srtt
    return _INFLIGHT_EXPIRY if srtt is None or srtt < _INFLIGHT_EXPIRY / 4 else 4 * srtt


def _settle(srtt: float) -> float:
    """Header compression: how long after a context goes out on a path of round trip
    `srtt` (seconds) a compact packet may follow on another, faster one."""
    return 1.25 * srtt + 0.005


def _path_info(path: PathState) -> PathInfo:
    """What the local portal tells the remote about `path`'s link (PATH_INFO)."""
    return PathInfo(path.metric, path.standby, path.download_bps)


def _keepalive_ref(path: PathState) -> float:
    last = path.last_send_time
    return last if last is not None else path.created


def _check_path_params(rate_bps: int | None, metric: int, name: str = "rate_bps") -> None:
    if rate_bps is not None and (not isinstance(rate_bps, int) or rate_bps <= 0):
        raise ValueError(f"{name}: must be a positive integer or None, got {rate_bps!r}")
    if not isinstance(metric, int) or metric < 0:
        raise ValueError(f"metric: must be a non-negative integer, got {metric!r}")
