# NACK retransmission (issue 7, point 3): a short sender-side retransmit buffer and the
# egress-side gap list that decides which sequence numbers to NACK.
#
# Invariants:
# - `RetransmitBuffer` holds at most `max_packets` packets and none older than `max_age`
#   seconds (oldest evicted first); each sequence number is resent at most `max_tries`
#   times; `on_nack` returns the packets to resend (the caller sends them on the fastest
#   live path).
# - `NackTracker` NACKs a missing sequence number at most `max_tries` times, spaced by
#   `retry_interval`, and never after `deadline` seconds from when the gap was seen (the
#   reorder timeout): past that the gap is abandoned, so retransmission never holds
#   delivery beyond the reorder timeout.
# - No clock: `now` is passed in.
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


class RetransmitBuffer:
    """Recently sent packets by session sequence number, for answering NACKs."""

    def __init__(self, max_packets: int = 512, max_age: float = 0.5, max_tries: int = 2) -> None:
        self.max_packets = max_packets
        self.max_age = max_age
        self.max_tries = max_tries
        self._buf: OrderedDict[int, tuple[float, bytes, int]] = OrderedDict()
        self.resent = 0
        self.missed = 0

    def on_sent(self, seq: int, packet: bytes, now: float) -> None:
        """Remember a packet just sent with session sequence `seq`."""
        self._buf[seq] = (now, packet, 0)
        while len(self._buf) > self.max_packets:
            self._buf.popitem(last=False)

    def _expire(self, now: float) -> None:
        while self._buf:
            seq, (sent, _, _) = next(iter(self._buf.items()))
            if now - sent < self.max_age:
                break
            del self._buf[seq]

    def on_nack(self, seqs: list[int], now: float) -> list[tuple[int, bytes]]:
        """Return (seq, packet) to resend for NACKed numbers still held and under the
        try limit; unknown or exhausted numbers are counted `missed`."""
        self._expire(now)
        out: list[tuple[int, bytes]] = []
        for seq in seqs:
            entry = self._buf.get(seq)
            if entry is None or entry[2] >= self.max_tries:
                self.missed += 1
                continue
            self._buf[seq] = (entry[0], entry[1], entry[2] + 1)
            out.append((seq, entry[1]))
        self.resent += len(out)
        return out


@dataclass(slots=True)
class _Gap:
    seen: float
    last_nack: float
    tries: int


class NackTracker:
    """Egress gap list: which missing session sequence numbers to NACK, and when."""

    def __init__(
        self,
        deadline: float = 0.2,
        retry_interval: float = 0.05,
        max_tries: int = 2,
        max_gaps: int = 1024,
    ) -> None:
        self.deadline = deadline
        self.retry_interval = retry_interval
        self.max_tries = max_tries
        self.max_gaps = max_gaps
        self._gaps: OrderedDict[int, _Gap] = OrderedDict()
        self.abandoned = 0
        self.filled = 0

    def on_missing(self, seq: int, now: float) -> None:
        """Register a sequence number that is missing (a later one arrived)."""
        if seq not in self._gaps:
            self._gaps[seq] = _Gap(now, -1.0, 0)
            while len(self._gaps) > self.max_gaps:
                self._gaps.popitem(last=False)
                self.abandoned += 1

    def on_received(self, seq: int) -> None:
        """A sequence number arrived (original, retransmission or FEC rebuild)."""
        if self._gaps.pop(seq, None) is not None:
            self.filled += 1

    def due(self, now: float, confident: set[int] | None = None) -> list[int]:
        """Numbers to NACK now. A gap is NACKed once `retry_interval` passed since it was
        seen (or at once if in `confident`, e.g. the loss predictor's verdict), then every
        `retry_interval`, at most `max_tries` times and only before its deadline."""
        out: list[int] = []
        stale: list[int] = []
        for seq, g in self._gaps.items():
            age = now - g.seen
            if age >= self.deadline or (
                g.tries >= self.max_tries and now - g.last_nack >= self.retry_interval
            ):
                stale.append(seq)
                continue
            if g.tries >= self.max_tries:
                continue
            ready = age >= self.retry_interval or (confident is not None and seq in confident)
            if ready and (g.tries == 0 or now - g.last_nack >= self.retry_interval):
                g.tries += 1
                g.last_nack = now
                out.append(seq)
        for seq in stale:
            del self._gaps[seq]
        self.abandoned += len(stale)
        return out

    def pending(self) -> list[int]:
        """Sequence numbers currently considered missing."""
        return list(self._gaps)
