# XOR forward error correction over groups of packets (issue 7, point 2).
#
# The sender groups protected packets, each identified by its session sequence number,
# and after `k` of them emits one parity: the XOR of their *symbols* (the bytes the
# receiver must rebuild, padded with zeros to the longest) plus the XOR of their
# lengths, and the list of the members' sequence numbers. The receiver keeps the symbols
# of recently received packets; once a parity and all its members but one are in, the
# missing one is rebuilt without waiting for a round trip. One parity per group rebuilds
# at most one loss.
#
# Invariants:
# - `choose_group_size(loss)` returns 0 (FEC off) on a clean link (loss below
#   `min_loss`), otherwise the largest k (2..MAX_GROUP) whose group of k packets plus
#   one parity loses two or more with probability under `target`: overhead 1/k follows
#   the measured loss.
# - The decoder holds at most `max_symbols` symbols and `max_parities` pending parities
#   (oldest evicted first); a parity older than `timeout` seconds is dropped by
#   `expire(now)` (counted `unrecoverable` if it still missed packets). No clock: `now`
#   is passed in.
# - A packet is rebuilt at most once, and never if its symbol is held (received).
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MAX_GROUP = 32


def xor_into(acc: bytearray, data: bytes) -> None:
    """XOR `data` into `acc`, growing `acc` with zeros as needed."""
    if len(data) > len(acc):
        acc.extend(bytes(len(data) - len(acc)))
    n = len(data)
    acc[:n] = (int.from_bytes(acc[:n], "big") ^ int.from_bytes(data, "big")).to_bytes(n, "big")


def choose_group_size(loss: float, min_loss: float = 0.002, target: float = 0.005) -> int:
    """Group size k for a measured loss rate (0 = FEC off on a clean link)."""
    if loss < min_loss:
        return 0
    best = 2
    for k in range(2, MAX_GROUP + 1):
        n = k + 1
        p_ok = (1.0 - loss) ** n + n * loss * (1.0 - loss) ** (n - 1)
        if 1.0 - p_ok <= target:
            best = k
        else:
            break
    return best


@dataclass(frozen=True, slots=True)
class Parity:
    """A parity: XOR of the symbols of the packets numbered `seqs`, and of their lengths."""

    seqs: tuple[int, ...]
    length_xor: int
    data: bytes


class FecEncoder:
    """Collects protected packets' symbols; returns a parity per full group."""

    def __init__(self, group_size: int = 0) -> None:
        self.group_size = group_size
        self._seqs: list[int] = []
        self._acc = bytearray()
        self._len_xor = 0
        self.opened = 0.0
        """When the open group got its first packet."""
        self.parities = 0

    @property
    def open(self) -> int:
        """Packets in the open group."""
        return len(self._seqs)

    def set_group_size(self, k: int) -> None:
        """Change k (0 or 1: off; the open group is kept until the next add or flush)."""
        self.group_size = max(0, min(k, MAX_GROUP))

    def add(self, seq: int, symbol: bytes, now: float) -> Parity | None:
        """Account one protected packet; the parity if its group is now full."""
        if not self._seqs:
            self.opened = now
        self._seqs.append(seq)
        xor_into(self._acc, symbol)
        self._len_xor ^= len(symbol)
        if len(self._seqs) >= max(self.group_size, 2):
            return self.flush()
        return None

    def flush(self) -> Parity | None:
        """Close the open group now (e.g. the flow paused); its parity if it has 2 or more
        packets (a single packet is simply dropped from protection)."""
        seqs = self._seqs
        parity = Parity(tuple(seqs), self._len_xor, bytes(self._acc)) if len(seqs) >= 2 else None
        self._seqs = []
        self._acc = bytearray()
        self._len_xor = 0
        if parity is not None:
            self.parities += 1
        return parity


class FecDecoder:
    """Received symbols by sequence number and pending parities; rebuilds one missing
    packet per parity. `symbol_of(item)` turns what `on_packet` stored into bytes."""

    def __init__(
        self,
        symbol_of: Callable[[Any], bytes],
        max_symbols: int = 2048,
        max_parities: int = 256,
        timeout: float = 0.5,
    ) -> None:
        self.symbol_of = symbol_of
        self.max_symbols = max_symbols
        self.max_parities = max_parities
        self.timeout = timeout
        self._symbols: OrderedDict[int, Any] = OrderedDict()
        self._pending: OrderedDict[int, tuple[float, Parity]] = OrderedDict()
        self._waiting: dict[int, int] = {}  # member seq -> pending parity id
        self._next_id = 0
        self.recovered = 0
        self.unrecoverable = 0

    def on_packet(self, seq: int, item: Any) -> list[tuple[int, bytes]]:
        """Record a received protected packet; rebuilt (seq, symbol) pairs, if any."""
        symbols = self._symbols
        symbols[seq] = item
        if len(symbols) > self.max_symbols:
            symbols.popitem(last=False)
        pid = self._waiting.pop(seq, None)
        if pid is None:
            return []
        entry = self._pending.get(pid)
        if entry is None:
            return []
        return self._try(pid, entry[1])

    def on_parity(self, parity: Parity, now: float) -> list[tuple[int, bytes]]:
        """Record a parity; rebuilt (seq, symbol) pairs, if any (else it waits)."""
        pid = self._next_id
        self._next_id += 1
        out = self._try(pid, parity)
        if out or pid in self._pending:
            return out
        missing = [s for s in parity.seqs if s not in self._symbols]
        if len(missing) >= 2:
            self._pending[pid] = (now, parity)
            for s in missing:
                self._waiting[s] = pid
            while len(self._pending) > self.max_parities:
                old, (_, stale) = self._pending.popitem(last=False)
                self._forget(old, stale, lost=True)
        return out

    def _try(self, pid: int, parity: Parity) -> list[tuple[int, bytes]]:
        symbols = self._symbols
        missing = [s for s in parity.seqs if s not in symbols]
        if len(missing) != 1:
            if not missing and pid in self._pending:
                del self._pending[pid]
            return []
        acc = bytearray(parity.data)
        length = parity.length_xor
        for s in parity.seqs:
            if s != missing[0]:
                symbol = self.symbol_of(symbols[s])
                xor_into(acc, symbol)
                length ^= len(symbol)
        entry = self._pending.pop(pid, None)
        if entry is not None:
            self._forget(pid, parity, lost=False)
        if length > len(acc):
            return []  # inconsistent (a corrupt or mismatched parity)
        self.recovered += 1
        return [(missing[0], bytes(acc[:length]))]

    def _forget(self, pid: int, parity: Parity, *, lost: bool) -> None:
        waiting = self._waiting
        for s in parity.seqs:
            if waiting.get(s) == pid:
                del waiting[s]
        if lost:
            self.unrecoverable += 1

    def expire(self, now: float) -> None:
        """Drop parities older than `timeout`."""
        pending = self._pending
        limit = now - self.timeout
        while pending:
            pid, (seen, parity) = next(iter(pending.items()))
            if seen > limit:
                break
            del pending[pid]
            self._forget(pid, parity, lost=True)
