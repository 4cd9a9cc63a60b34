# NACK retransmission (issue 7, point 3): the sender's retransmit buffer and the egress's
# gap list, both keyed by session sequence number.
#
# Invariants:
# - `RetransmitBuffer` holds at most `max_packets` entries and answers for none older than
#   `max_age` seconds (oldest evicted first); each sequence number is resent at most
#   `max_tries` times, and not again within `repeat_after` (a NACK sent on two paths);
#   `on_nack` returns what to resend and what it cannot (gone).
# - `NackTracker` keeps the missing sequence numbers of the egress (a later number
#   arrived, this one not yet), at most `max_gaps` (oldest abandoned first). A gap is
#   *open* until NACKed, then *outstanding* until it is filled or abandoned: NACKed at
#   most `max_tries` times, `retry_interval` apart, and abandoned `deadline` seconds after
#   it was seen, so a retransmission never holds delivery longer than that.
# - Gaps are kept in ascending sequence order (they are registered as later numbers
#   arrive), which lets `nack_through` stop at the first gap above its threshold.
# - No clock: `now` is passed in.
from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Iterator
from typing import Any


class RetransmitBuffer:
    """Recently sent packets by session sequence number, for answering NACKs.

    Per packet sent it keeps only the packet (no record object): the send times live in
    a deque in the same order, and the try counts only for numbers NACKed."""

    def __init__(
        self,
        max_packets: int = 4096,
        max_age: float = 0.5,
        max_tries: int = 3,
        repeat_after: float = 0.02,
    ) -> None:
        self.max_packets = max_packets
        self.max_age = max_age
        self.max_tries = max_tries
        self.repeat_after = repeat_after
        self._buf: OrderedDict[int, Any] = OrderedDict()
        self._times: deque[float] = deque()  # send times, in the order of _buf
        # NACKed: (resends, last resend, the path of the last one sent; -1: none yet)
        self._tries: dict[int, tuple[int, float, int]] = {}
        self.resent = 0
        self.missed = 0

    def __len__(self) -> int:
        return len(self._buf)

    def on_sent(self, seq: int, packet: Any, now: float) -> None:
        """Remember a packet (any object, e.g. the queued item) sent with number `seq`
        (numbers come in increasing order)."""
        buf = self._buf
        buf[seq] = packet
        times = self._times
        if len(buf) > len(times):  # (a number seen again keeps its place and time)
            times.append(now)
            if len(times) > self.max_packets:
                self._drop_oldest()

    def replace(self, seq: int, packet: Any) -> None:
        """What a resend of number `seq` sends, if it is still held (`ack_filter` put a
        newer acknowledgement in its place)."""
        if seq in self._buf:
            self._buf[seq] = packet

    def _drop_oldest(self) -> None:
        seq, _ = self._buf.popitem(last=False)
        self._times.popleft()
        if self._tries:
            self._tries.pop(seq, None)

    def _expire(self, now: float) -> None:
        times = self._times
        limit = now - self.max_age
        while times and times[0] <= limit:
            self._drop_oldest()

    def on_nack(self, seqs: list[int], now: float) -> tuple[list[Any], list[int]]:
        """(packets to resend, numbers gone): a NACKed number still held and under the
        try limit is resent; an unknown, expired or exhausted one is gone (`missed`). A
        number resent less than `repeat_after` ago is neither (the same NACK sent on
        another path)."""
        self._expire(now)
        out: list[Any] = []
        gone: list[int] = []
        buf = self._buf
        tries = self._tries
        for seq in seqs:
            packet = buf.get(seq)
            count, last, where = tries.get(seq, (0, -math.inf, -1))
            if packet is None or count >= self.max_tries:
                gone.append(seq)
                continue
            if now - last < self.repeat_after:
                continue
            tries[seq] = (count + 1, now, where)
            out.append(packet)
        self.resent += len(out)
        self.missed += len(gone)
        return out, gone

    def on_resent(self, seq: int, path_id: int) -> None:
        """The resend of `seq` just returned by `on_nack` went out on `path_id` (one the
        caller did not send, for want of budget, is never recorded so)."""
        count, last, _ = self._tries[seq]
        self._tries[seq] = (count, last, path_id)

    def resent_elsewhere(self, seq: int, path_id: int) -> bool:
        """Whether `seq` was resent, the last time on a path other than `path_id` (a
        failover need not send it again)."""
        entry = self._tries.get(seq)
        return entry is not None and entry[2] not in (-1, path_id)


class Gap:
    """One missing sequence number at the egress (and its samples, with gap tracing)."""

    __slots__ = ("last_nack", "samples", "seen", "tries")

    def __init__(self, seen: float) -> None:
        self.seen = seen
        self.last_nack = -1.0
        self.tries = 0
        self.samples: list[list[float]] | None = None


class NackTracker:
    """Egress gap list: which missing session sequence numbers to NACK, and when."""

    def __init__(
        self,
        deadline: float = 0.2,
        retry_interval: float = 0.05,
        max_tries: int = 2,
        max_gaps: int = 4096,
    ) -> None:
        self.deadline = deadline
        self.retry_interval = retry_interval
        self.max_tries = max_tries
        self.max_gaps = max_gaps
        self._gaps: OrderedDict[int, Gap] = OrderedDict()
        self._outstanding = 0
        self.nacked = 0
        self.abandoned = 0
        self.filled = 0
        self.recovered = 0

    def __len__(self) -> int:
        return len(self._gaps)

    @property
    def outstanding(self) -> int:
        """Gaps NACKed and neither filled nor abandoned."""
        return self._outstanding

    def on_missing(self, seq: int, now: float) -> None:
        """Register a sequence number that is missing (a later one arrived)."""
        gaps = self._gaps
        if seq not in gaps:
            gaps[seq] = Gap(now)
            if len(gaps) > self.max_gaps:
                _, gap = gaps.popitem(last=False)
                self._drop(gap)

    def on_received(self, seq: int, *, resent: bool = False) -> Gap | None:
        """A sequence number arrived; returns its gap if it was one (then forgotten)."""
        gap = self._gaps.pop(seq, None)
        if gap is not None:
            self.filled += 1
            if gap.tries:
                self._outstanding -= 1
                if resent:
                    self.recovered += 1
        return gap

    def abandon(self, seq: int) -> Gap | None:
        """Give a gap up (the sender no longer has the packet)."""
        gap = self._gaps.pop(seq, None)
        if gap is not None:
            self._drop(gap)
        return gap

    def _drop(self, gap: Gap) -> None:
        self.abandoned += 1
        if gap.tries:
            self._outstanding -= 1

    def open_gaps(self) -> Iterator[tuple[int, Gap]]:
        """The gaps not NACKed yet, ascending."""
        for seq, gap in self._gaps.items():
            if not gap.tries:
                yield seq, gap

    def mark(self, seq: int, now: float) -> None:
        """Record a NACK for gap `seq` (sent now)."""
        gap = self._gaps[seq]
        if not gap.tries:
            self._outstanding += 1
        gap.tries += 1
        gap.last_nack = now
        self.nacked += 1

    def nack_through(self, threshold: int, now: float) -> list[int]:
        """NACK (mark and return) every open gap at or below `threshold`: every live path
        passed it, so it is lost."""
        out: list[int] = []
        for seq, gap in self._gaps.items():
            if seq > threshold:
                break
            if not gap.tries:
                out.append(seq)
        for seq in out:
            self.mark(seq, now)
        return out

    def retries_and_expiry(self, now: float) -> tuple[list[int], list[tuple[int, Gap]]]:
        """(numbers to NACK again, gaps abandoned now): an outstanding gap is NACKed again
        `retry_interval` after its last NACK while under `max_tries`; any gap is abandoned
        `deadline` after it was seen."""
        again: list[int] = []
        stale: list[tuple[int, Gap]] = []
        limit = now - self.deadline
        interval = self.retry_interval
        tries = self.max_tries
        for seq, gap in self._gaps.items():
            if gap.seen <= limit:
                stale.append((seq, gap))
            elif gap.tries and gap.tries < tries and now - gap.last_nack >= interval:
                again.append(seq)
        for seq, gap in stale:
            del self._gaps[seq]
            self._drop(gap)
        for seq in again:
            self.mark(seq, now)
        return again, stale

    def lowest_outstanding(self) -> int | None:
        """The lowest NACKed number still awaited (None: none)."""
        if not self._outstanding:
            return None
        for seq, gap in self._gaps.items():
            if gap.tries:
                return seq
        return None

    def pending(self) -> list[int]:
        """Sequence numbers currently considered missing."""
        return list(self._gaps)
