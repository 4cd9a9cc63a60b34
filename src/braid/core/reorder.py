# Reorder buffer: releases inner packets in per-bucket sequence order.
#
# Theory of operation. Every bucket (a hash of the inner 5-tuple) has an `expected` bucket
# sequence number (starting at 0, the sender's first). A packet with that number is
# released at once, with any held successors that follow it without a gap. A packet ahead
# of `expected` is held; the bucket is *blocked* at a gap whose *head* is the lowest held
# number. A gap is skipped (expected jumps to the head, the run from the head is released):
#
# - by proof: every live path has *passed* the head's session sequence number (reported
#   with `on_path_progress`: it delivered that number or something sent after it). The
#   missing packets were sent before the head (lower session seq) and paths are FIFO, so
#   whatever path carried them would have delivered them already: they are lost; unless
#   the bucket is *patient* and the head is at or above the *proof cap* (`set_proof_cap`:
#   a lost packet below it has been NACKed and its resend may still fill the gap);
# - by timeout: a held packet has waited `timeout` seconds (`impatient_timeout` in an
#   impatient bucket; gaps up to it are skipped);
# - by overflow: the buffer holds more than `limit_packets` packets or `limit_bytes`
#   bytes; the oldest held packet is treated as timed out.
#
# A packet numbered below `expected` (its gap was skipped) is released at once and
# counted `late`; a packet whose number is already held is dropped as a duplicate.
#
# Patience (issue 7): a bucket is patient (the default) or impatient as its latest packet
# was pushed. The session makes TCP flows patient: they wait for NACKed resends (the proof
# cap, a timeout that covers a resend's round trip). Other flows (a call's audio, a ping)
# are better served by a gap skipped at once than by a packet that comes a round trip
# late, so they are proven past the cap and time out after `impatient_timeout`.
#
# Invariants:
# - No packet is held longer than `timeout` past its arrival once `pop_ready(now)` runs
#   at or after `deadline()`, and never more than the packet and byte limits are held.
# - Releases happen in this order after each input: the packet itself (and its run), then
#   proven gaps in ascending head session seq, then overflow (oldest held first); in
#   `pop_ready`, timed-out packets oldest first, each followed by the proven gaps.
# - Cost: O(1) for an in-order packet, O(log n) per held packet (a heap of held numbers
#   per bucket, one heap of arrivals, one heap of gap heads); stale heap entries are
#   discarded lazily. The proof threshold (the lowest progress of the live paths) is
#   recomputed only while some bucket is blocked.
# - No clock: `now` is passed in.

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

_HALF32: Final = 1 << 31
_MASK32: Final = 0xFFFFFFFF
_NO_PROOF: Final = -math.inf
_INF: Final = math.inf


@dataclass(frozen=True, slots=True)
class ReorderStatistics:
    """A snapshot of the reorder buffer's counters."""

    timeout: float
    buffered_packets: int
    buffered_bytes: int
    max_buffered_packets: int
    max_buffered_bytes: int
    released: int
    late: int
    duplicates: int
    gaps_skipped_proof: int
    gaps_skipped_timeout: int
    gaps_skipped_overflow: int
    packets_skipped: int


class _Bucket:
    __slots__ = ("expected", "heap", "held", "patient", "registered")

    def __init__(self) -> None:
        self.expected = 0
        self.patient = True
        # bucket seq -> (session seq, packet, tag) for every held packet (all > expected).
        self.held: dict[int, tuple[int, bytes, float]] = {}
        # Min-heap of held bucket seqs; entries below `expected` are stale.
        self.heap: list[int] = []
        # The head last pushed onto the buffer's heap of heads (avoids duplicate entries).
        self.registered = -1


class ReorderBuffer:
    """Per-bucket in-order release with gap skipping by proof, timeout and overflow."""

    def __init__(
        self,
        *,
        timeout: float = 0.05,
        limit_packets: int = 4096,
        limit_bytes: int = 8 * 1024 * 1024,
        tagged: bool = False,
    ) -> None:
        if timeout < 0:
            raise ValueError(f"reorder timeout must be >= 0, got {timeout}")
        if limit_packets < 1 or limit_bytes < 1:
            raise ValueError("reorder limits must be >= 1")
        self.timeout = timeout
        self.impatient_timeout = timeout
        """The timeout of impatient buckets (the session keeps it at most `timeout`)."""
        self.limit_packets = limit_packets
        self.limit_bytes = limit_bytes
        self._buckets: dict[int, _Bucket] = {}
        self._ready: list[bytes] = []
        # With `tagged`: each released packet's tag (`push`), session seq and bucket, in
        # the same order.
        self._tagged = tagged
        self._tags: list[float] = []
        self._seqs: list[int] = []
        self._out_buckets: list[int] = []
        # (arrival, order, bucket, bucket seq) for every held packet, one heap for the
        # packets of patient buckets and one for the others.
        self._arrivals: list[tuple[float, int, int, int]] = []
        self._arrivals_free: list[tuple[float, int, int, int]] = []
        self._order = 0
        # (head session seq, bucket, head bucket seq) for every blocked bucket's head, the
        # same two ways.
        self._heads: list[tuple[int, int, int]] = []
        self._heads_free: list[tuple[int, int, int]] = []
        self._progress: dict[int, int] = {}
        self._live: frozenset[int] = frozenset()
        self._threshold: float = _NO_PROOF  # patient buckets (below the proof cap)
        self._threshold_free: float = _NO_PROOF  # impatient buckets
        # issue 7: proofs stop below this session seq (a NACKed packet is awaited).
        self._cap: float = _INF
        # True when progress moved while no gap needed the threshold (computed lazily).
        self._threshold_stale = False
        self._buffered = 0
        self._buffered_bytes = 0
        self._max_buffered = 0
        self._max_buffered_bytes = 0
        self._released = 0
        self._late = 0
        self._duplicates = 0
        self._skipped_proof = 0
        self._skipped_timeout = 0
        self._skipped_overflow = 0
        self._packets_skipped = 0

    # -- inputs ------------------------------------------------------------------------

    def push(
        self,
        bucket: int,
        bucket_seq: int,
        session_seq: int,
        packet: bytes,
        *,
        now: float,
        tag: float = 0.0,
        patient: bool = True,
    ) -> None:
        """Add one packet (`bucket_seq` as on the wire, `session_seq` unwrapped). `tag` is
        handed back with the packet by `pop_ready_tagged` (the session's delivery time);
        `patient` says whether the bucket waits for NACKed resends (see module comment)."""
        state = self._buckets.get(bucket)
        if state is None:
            state = self._buckets[bucket] = _Bucket()
        state.patient = patient
        expected = state.expected
        seq = expected + ((bucket_seq - expected + _HALF32) & _MASK32) - _HALF32
        if seq == expected:
            state.expected = expected + 1
            self._ready.append(packet)
            if self._tagged:
                self._tags.append(tag)
                self._seqs.append(session_seq)
                self._out_buckets.append(bucket)
            self._released += 1
            if state.held:
                self._release_run(bucket, state, tag)
                self._release_proven()
            return
        if seq < expected:
            self._late += 1
            self._released += 1
            self._ready.append(packet)
            if self._tagged:
                self._tags.append(tag)
                self._seqs.append(session_seq)
                self._out_buckets.append(bucket)
            return
        held = state.held
        if seq in held:
            self._duplicates += 1
            return
        held[seq] = (session_seq, packet, tag)
        heap = state.heap
        new_head = not heap or seq < heap[0]
        heapq.heappush(heap, seq)
        order = self._order
        self._order = order + 1
        heapq.heappush(
            self._arrivals if patient else self._arrivals_free, (now, order, bucket, seq)
        )
        self._buffered += 1
        self._buffered_bytes += len(packet)
        if self._buffered > self._max_buffered:
            self._max_buffered = self._buffered
        if self._buffered_bytes > self._max_buffered_bytes:
            self._max_buffered_bytes = self._buffered_bytes
        if new_head:
            state.registered = seq
            heapq.heappush(self._heads if patient else self._heads_free, (session_seq, bucket, seq))
            if self._threshold_stale:
                self._compute_threshold()
            if session_seq <= (self._threshold if patient else self._threshold_free):
                self._release_proven()
        if self._buffered > self.limit_packets or self._buffered_bytes > self.limit_bytes:
            self._release_overflow()

    def on_path_progress(self, path_id: int, session_seq: int) -> None:
        """Path `path_id` passed (unwrapped) `session_seq`: it delivered that packet or
        anything sent after it. Progress only moves forward."""
        old = self._progress.get(path_id)
        if old is not None and session_seq <= old:
            return
        self._progress[path_id] = session_seq
        if self._threshold_stale or path_id not in self._live:
            return
        if old is None or old <= self._threshold_free:  # this path may have been the slowest
            if self._heads or self._heads_free:
                self._update_threshold()
            else:  # nothing to prove: compute it when a gap appears
                self._threshold_stale = True

    def set_live_paths(self, path_ids: Iterable[int]) -> None:
        """The paths whose progress proves gaps (the up ones); a path without progress
        blocks proofs until it reports some."""
        live = frozenset(path_ids)
        if live != self._live:
            self._live = live
            self._update_threshold()

    def forget_path(self, path_id: int) -> None:
        """Drop a removed path's progress (also removes it from the live set)."""
        self._progress.pop(path_id, None)
        if path_id in self._live:
            self._live = self._live - {path_id}
            self._update_threshold()

    def set_proof_cap(self, session_seq: int | None) -> None:
        """Prove no gap of a patient bucket whose head is at or above `session_seq` (the
        lowest packet a NACK awaits: its resend may fill the gap); None lifts the cap.
        Timeouts still apply."""
        cap = _INF if session_seq is None else session_seq
        if cap != self._cap:
            self._cap = cap
            self._update_threshold()

    # -- outputs -----------------------------------------------------------------------

    def expire(self, *, now: float) -> None:
        """Skip the gaps of packets that timed out by `now` (released on the next pop)."""
        for arrivals, timeout in (
            (self._arrivals, self.timeout),
            (self._arrivals_free, self.impatient_timeout),
        ):
            while arrivals and arrivals[0][0] + timeout <= now:
                _, _, bucket, seq = heapq.heappop(arrivals)
                state = self._buckets[bucket]
                if seq in state.held:
                    self._skip_through(bucket, state, seq, overflow=False)
                    self._release_proven()

    def _due(self, now: float) -> bool:
        """Whether the oldest held packet of either kind may have timed out by `now`."""
        arrivals = self._arrivals
        if arrivals and arrivals[0][0] + self.timeout <= now:
            return True
        arrivals = self._arrivals_free
        return bool(arrivals) and arrivals[0][0] + self.impatient_timeout <= now

    def pop_ready(self, *, now: float) -> list[bytes]:
        """Skip the gaps of packets that timed out by `now`; return all released packets."""
        if self._due(now):
            self.expire(now=now)
        ready = self._ready
        if not ready:
            return []
        self._ready = []
        if self._tagged:
            self._tags = []
            self._seqs = []
            self._out_buckets = []
        return ready

    def untag(self, bucket: int) -> None:
        """Lower to 0.0 every positive tag of `bucket`'s packets still in the buffer (held
        or released and not yet popped): the session no longer holds them for their own
        time, only behind what it already holds."""
        state = self._buckets.get(bucket)
        if state is not None and state.held:
            held = state.held
            for seq, (session_seq, packet, tag) in list(held.items()):
                if tag > 0.0:
                    held[seq] = (session_seq, packet, 0.0)
        if self._tagged and self._ready:
            tags = self._tags
            for index, owner in enumerate(self._out_buckets):
                if owner == bucket and tags[index] > 0.0:
                    tags[index] = 0.0

    def pop_ready_tagged(
        self, *, now: float
    ) -> tuple[list[bytes], list[float], list[int], list[int]]:
        """`pop_ready`, with each packet's tag (as given to `push`), session seq and bucket,
        in the same order (a buffer made with `tagged`)."""
        if not self._tagged:
            raise ValueError("pop_ready_tagged needs a ReorderBuffer made with tagged=True")
        if self._due(now):
            self.expire(now=now)
        ready = self._ready
        if not ready:
            return [], [], [], []
        tags = self._tags
        seqs = self._seqs
        buckets = self._out_buckets
        self._ready = []
        self._tags = []
        self._seqs = []
        self._out_buckets = []
        return ready, tags, seqs, buckets

    def deadline(self) -> float | None:
        """When the first held packet times out (None if nothing is held)."""
        buckets = self._buckets
        first: float | None = None
        for arrivals, timeout in (
            (self._arrivals, self.timeout),
            (self._arrivals_free, self.impatient_timeout),
        ):
            while arrivals:
                _, _, bucket, seq = arrivals[0]
                if seq in buckets[bucket].held:
                    due = arrivals[0][0] + timeout
                    if first is None or due < first:
                        first = due
                    break
                heapq.heappop(arrivals)
        return first

    @property
    def buffered_packets(self) -> int:
        """Packets currently held."""
        return self._buffered

    def statistics(self) -> ReorderStatistics:
        """A frozen snapshot of the counters."""
        return ReorderStatistics(
            timeout=self.timeout,
            buffered_packets=self._buffered,
            buffered_bytes=self._buffered_bytes,
            max_buffered_packets=self._max_buffered,
            max_buffered_bytes=self._max_buffered_bytes,
            released=self._released,
            late=self._late,
            duplicates=self._duplicates,
            gaps_skipped_proof=self._skipped_proof,
            gaps_skipped_timeout=self._skipped_timeout,
            gaps_skipped_overflow=self._skipped_overflow,
            packets_skipped=self._packets_skipped,
        )

    # -- internals ---------------------------------------------------------------------

    def _release_run(self, bucket: int, state: _Bucket, floor: float = -_INF) -> None:
        """Release held packets from `expected` on; if still blocked, register the head.

        Tags do not decrease along the run, from `floor` (the tag of the packet that
        unblocked it): a packet the session would deliver at once does not overtake an
        earlier one of its flow that it holds."""
        held = state.held
        expected = state.expected
        ready = self._ready
        tags = self._tags if self._tagged else None
        seqs = self._seqs
        out_buckets = self._out_buckets
        count = 0
        size = 0
        while expected in held:
            session_seq, packet, tag = held.pop(expected)
            ready.append(packet)
            if tags is not None:
                if tag < floor:
                    tag = floor
                floor = tag
                tags.append(tag)
                seqs.append(session_seq)
                out_buckets.append(bucket)
            count += 1
            size += len(packet)
            expected += 1
        state.expected = expected
        self._buffered -= count
        self._buffered_bytes -= size
        self._released += count
        heap = state.heap
        if not held:
            heap.clear()
            return
        while heap[0] < expected:
            heapq.heappop(heap)
        head = heap[0]
        if head != state.registered:
            state.registered = head
            heapq.heappush(
                self._heads if state.patient else self._heads_free,
                (held[head][0], bucket, head),
            )

    def _skip_gap(self, bucket: int, state: _Bucket) -> None:
        """Skip the gap before the bucket's head and release the run after it."""
        heap = state.heap
        while heap[0] < state.expected:
            heapq.heappop(heap)
        head = heap[0]
        self._packets_skipped += head - state.expected
        state.expected = head
        self._release_run(bucket, state)

    def _skip_through(self, bucket: int, state: _Bucket, seq: int, *, overflow: bool) -> None:
        """Skip every gap up to held packet `seq` (timeout or overflow)."""
        while state.expected <= seq:
            if overflow:
                self._skipped_overflow += 1
            else:
                self._skipped_timeout += 1
            self._skip_gap(bucket, state)

    def _release_proven(self) -> None:
        if self._threshold_stale:
            self._compute_threshold()
        buckets = self._buckets
        # (A skipped gap registers the bucket's next head in its own heap: the loop over
        # one heap sees it; a bucket that changed patience may leave one in the other.)
        for heads, threshold in (
            (self._heads, self._threshold),
            (self._heads_free, self._threshold_free),
        ):
            while heads and heads[0][0] <= threshold:
                _, bucket, head = heapq.heappop(heads)
                state = buckets[bucket]
                # Valid only if `head` is still this bucket's head (held, lowest, past a
                # gap).
                if head not in state.held or head <= state.expected:
                    continue
                heap = state.heap
                while heap[0] < state.expected:
                    heapq.heappop(heap)
                if heap[0] != head:
                    continue
                self._skipped_proof += 1
                self._skip_gap(bucket, state)

    def _release_overflow(self) -> None:
        patient = self._arrivals
        free = self._arrivals_free
        buckets = self._buckets
        while (patient or free) and (
            self._buffered > self.limit_packets or self._buffered_bytes > self.limit_bytes
        ):
            # The oldest held packet first, whichever heap it is in.
            arrivals = patient if not free or (patient and patient[0] < free[0]) else free
            _, _, bucket, seq = heapq.heappop(arrivals)
            state = buckets[bucket]
            if seq in state.held:
                self._skip_through(bucket, state, seq, overflow=True)
                self._release_proven()

    def _compute_threshold(self) -> None:
        """The lowest progress of the live paths (what every live path has passed)."""
        threshold: float = _INF if self._live else _NO_PROOF
        progress = self._progress
        for path_id in self._live:
            value = progress.get(path_id, _NO_PROOF)
            if value < threshold:
                threshold = value
        self._threshold_free = threshold
        if self._cap <= threshold:
            threshold = self._cap - 1
        self._threshold = threshold
        self._threshold_stale = False

    def _update_threshold(self) -> None:
        old, old_free = self._threshold, self._threshold_free
        self._compute_threshold()
        if self._threshold > old or self._threshold_free > old_free:
            self._release_proven()
