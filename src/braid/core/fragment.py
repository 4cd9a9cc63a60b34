# Fragmentation and bounded reassembly of inner packets (issue 7, point 1).
#
# `split(packet, mtu)` cuts a packet into `count` fragments of at most `mtu` bytes, each
# tagged (packet id, index, count); fragments may travel on different paths (each one is
# sealed by the record layer, whose AEAD tag authenticates it). `Reassembler` rebuilds a
# packet once all its fragments arrived, in any order.
#
# Invariants:
# - At most `max_packets` partial packets and `max_bytes` buffered bytes are held; the
#   oldest partial packet is evicted first (counted `evicted`).
# - A partial packet older than `timeout` is dropped by `expire(now)` (counted
#   `timed_out`). No clock: `now` is passed in.
# - Fragments with an inconsistent count, an index out of range or a duplicate index are
#   dropped and counted `malformed`; a packet is delivered at most once per id while its
#   state lives.
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

MAX_FRAGMENTS = 64


@dataclass(frozen=True, slots=True)
class Fragment:
    """One piece of an inner packet: `index` of `count` pieces of packet `packet_id`."""

    packet_id: int
    index: int
    count: int
    data: bytes


def split(packet: bytes, mtu: int, packet_id: int, parts: int = 0) -> list[Fragment]:
    """Split `packet` into fragments of at most `mtu` bytes (or into `parts` equal ones).

    `parts` > 0 forces that many near-equal fragments (for splitting over slow links);
    raises ValueError if the packet needs more than MAX_FRAGMENTS pieces or mtu < 1.
    """
    if mtu < 1:
        raise ValueError("mtu must be at least 1")
    n = max(parts, -(-len(packet) // mtu), 1)
    if n > MAX_FRAGMENTS:
        raise ValueError(f"packet of {len(packet)} bytes needs more than {MAX_FRAGMENTS} fragments")
    size = -(-len(packet) // n) if packet else 0
    return [Fragment(packet_id, i, n, packet[i * size : (i + 1) * size]) for i in range(n)]


@dataclass(slots=True)
class _Partial:
    created: float
    count: int
    pieces: dict[int, bytes] = field(default_factory=dict)
    size: int = 0


class Reassembler:
    """Bounded per-packet-id reassembly with timeout."""

    def __init__(
        self, max_packets: int = 256, max_bytes: int = 1 << 20, timeout: float = 0.5
    ) -> None:
        self.max_packets = max_packets
        self.max_bytes = max_bytes
        self.timeout = timeout
        self._partial: OrderedDict[int, _Partial] = OrderedDict()
        self._bytes = 0
        self.completed = 0
        self.evicted = 0
        self.timed_out = 0
        self.malformed = 0

    @property
    def held_bytes(self) -> int:
        """Bytes currently buffered in partial packets."""
        return self._bytes

    def _drop(self, key: int) -> _Partial:
        p = self._partial.pop(key)
        self._bytes -= p.size
        return p

    def on_fragment(self, frag: Fragment, now: float) -> bytes | None:
        """Add a fragment; return the whole packet when its last fragment arrives."""
        if not (1 <= frag.count <= MAX_FRAGMENTS) or not (0 <= frag.index < frag.count):
            self.malformed += 1
            return None
        if frag.count == 1:
            self.completed += 1
            return frag.data
        p = self._partial.get(frag.packet_id)
        if p is None:
            p = _Partial(now, frag.count)
            self._partial[frag.packet_id] = p
        elif p.count != frag.count or frag.index in p.pieces:
            self.malformed += 1
            return None
        p.pieces[frag.index] = frag.data
        p.size += len(frag.data)
        self._bytes += len(frag.data)
        if len(p.pieces) == p.count:
            self._drop(frag.packet_id)
            self.completed += 1
            return b"".join(p.pieces[i] for i in range(p.count))
        while self._partial and (
            len(self._partial) > self.max_packets or self._bytes > self.max_bytes
        ):
            self._drop(next(iter(self._partial)))
            self.evicted += 1
        return None

    def expire(self, now: float) -> None:
        """Drop partial packets older than `timeout`."""
        while self._partial:
            key, p = next(iter(self._partial.items()))
            if now - p.created < self.timeout:
                break
            self._drop(key)
            self.timed_out += 1


def inner_mtu(path_mtus: list[int], overhead: int) -> int:
    """Inner MTU so that no outer packet exceeds any live path's MTU (min over paths)."""
    if not path_mtus:
        raise ValueError("no path MTU known")
    return min(path_mtus) - overhead


def split_lowers_latency(
    size: int, rates_bps: list[float], delays: list[float], overhead: int = 60
) -> bool:
    """True if splitting `size` bytes over the paths (shares proportional to rate, each
    fragment paying `overhead` header bytes) finishes earlier than sending it whole on the
    single best path (serialisation + one-way delay)."""
    pairs = list(zip(rates_bps, delays, strict=True))
    whole = min((size + overhead) * 8 / r + d for r, d in pairs)
    total = sum(rates_bps)
    split_t = max((size * r / total + overhead) * 8 / r + d for r, d in pairs)
    return split_t < whole
