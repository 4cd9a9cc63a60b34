# XOR forward error correction over groups of packets (issue 7, point 2).
#
# The encoder numbers data packets with a group id and an index; after `k` packets of a
# group it emits one parity symbol: the XOR of the packets, each padded to the longest,
# plus the XOR of their 16-bit lengths. The decoder keeps each open group's received
# packets; when the group has k-1 packets and the parity, the missing one is rebuilt
# without waiting for a round trip. One parity per group rebuilds at most one loss.
#
# Invariants:
# - `choose_group_size(loss)` returns 0 (FEC off) on a clean link (loss below
#   `min_loss`), otherwise the largest k with P(two or more losses in k+1) kept small:
#   overhead 1/k follows the measured loss.
# - The decoder holds at most `max_groups` groups; the oldest are evicted first, and a
#   group older than `timeout` seconds is dropped by `expire(now)`. No clock: `now` is
#   passed in.
# - A packet is rebuilt at most once, and never if it was received.
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

MAX_GROUP = 32


def _xor_into(acc: bytearray, data: bytes) -> None:
    """XOR `data` into `acc`, growing `acc` with zeros as needed."""
    if len(data) > len(acc):
        acc.extend(bytes(len(data) - len(acc)))
    n = len(data)
    acc[:n] = (int.from_bytes(acc[:n], "big") ^ int.from_bytes(data, "big")).to_bytes(n, "big")


def choose_group_size(loss: float, min_loss: float = 0.002, target: float = 0.005) -> int:
    """Group size k for a measured loss rate (0 = FEC off on a clean link).

    Picks the largest k (2..MAX_GROUP) such that the chance that a group of k data plus
    one parity loses two or more symbols stays below `target`; k = 2 if none qualifies.
    """
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
    """A parity symbol: XOR of `count` packets of group `group` and of their lengths."""

    group: int
    count: int
    length_xor: int
    data: bytes


class FecEncoder:
    """Assigns (group, index) to outgoing packets and emits a parity per full group."""

    def __init__(self, group_size: int = 0) -> None:
        self.group_size = group_size
        self.group = 0
        self._index = 0
        self._acc = bytearray()
        self._len_xor = 0
        self.parities_sent = 0

    def set_group_size(self, k: int) -> None:
        """Change k; an open group is closed (parity emitted at the next `add`) if full."""
        self.group_size = max(0, min(k, MAX_GROUP))

    def add(self, packet: bytes) -> tuple[int, int, Parity | None]:
        """Account `packet`; return its (group, index) and a parity if the group closed.

        With FEC off (group size 0 or 1) returns index -1 and no parity.
        """
        if self.group_size < 2:
            return self.group, -1, None
        group, index = self.group, self._index
        _xor_into(self._acc, packet)
        self._len_xor ^= len(packet)
        self._index += 1
        if self._index >= self.group_size:
            return group, index, self.flush()
        return group, index, None

    def flush(self) -> Parity | None:
        """Close the open group now (e.g. on idle); return its parity if it has packets."""
        if self._index == 0:
            return None
        parity = Parity(self.group, self._index, self._len_xor, bytes(self._acc))
        self.group = (self.group + 1) & 0xFFFFFFFF
        self._index = 0
        self._acc = bytearray()
        self._len_xor = 0
        self.parities_sent += 1
        return parity


@dataclass(slots=True)
class _Group:
    created: float
    packets: dict[int, bytes] = field(default_factory=dict)
    parity: Parity | None = None
    done: bool = False


class FecDecoder:
    """Collects packets and parities per group; rebuilds a single missing packet."""

    def __init__(self, max_groups: int = 256, timeout: float = 1.0) -> None:
        self.max_groups = max_groups
        self.timeout = timeout
        self._groups: OrderedDict[int, _Group] = OrderedDict()
        self.recovered = 0
        self.unrecoverable = 0

    def _get(self, group: int, now: float) -> _Group:
        g = self._groups.get(group)
        if g is None:
            g = _Group(now)
            self._groups[group] = g
            while len(self._groups) > self.max_groups:
                _, old = self._groups.popitem(last=False)
                self._account_lost(old)
        return g

    def _account_lost(self, g: _Group) -> None:
        if not g.done and g.parity is not None and len(g.packets) < g.parity.count:
            self.unrecoverable += 1

    def on_packet(
        self, group: int, index: int, packet: bytes, now: float
    ) -> list[tuple[int, bytes]]:
        """Record a received data packet; return rebuilt (index, packet) pairs, if any."""
        g = self._get(group, now)
        if g.done or index in g.packets:
            return []
        g.packets[index] = packet
        return self._try(g)

    def on_parity(self, parity: Parity, now: float) -> list[tuple[int, bytes]]:
        """Record a parity symbol; return rebuilt (index, packet) pairs, if any."""
        g = self._get(parity.group, now)
        if g.done or g.parity is not None:
            return []
        g.parity = parity
        return self._try(g)

    def _try(self, g: _Group) -> list[tuple[int, bytes]]:
        p = g.parity
        if p is None:
            return []
        have = len(g.packets)
        if have >= p.count:
            g.done = True
            g.packets.clear()
            return []
        if have < p.count - 1:
            return []
        missing = next(i for i in range(p.count) if i not in g.packets)
        acc = bytearray(p.data)
        length = p.length_xor
        for data in g.packets.values():
            _xor_into(acc, data)
            length ^= len(data)
        g.done = True
        g.packets.clear()
        if length > len(acc):
            return []
        self.recovered += 1
        return [(missing, bytes(acc[:length]))]

    def expire(self, now: float) -> None:
        """Drop groups older than `timeout`."""
        while self._groups:
            key, g = next(iter(self._groups.items()))
            if now - g.created < self.timeout:
                break
            del self._groups[key]
            self._account_lost(g)
