"""Inner header compression (DATA flags *context*, *compact*, *trimmed*; `compress_headers`).

Every inner TCP or UDP packet repeats what its flow's packets all carry: the IP version,
addresses, protocol, TTL and ports. Lengths and the IPv4 header checksum follow from the
rest. The ingress sends a flow's first packets whole, flagged *context* and prefixed by
a one-byte context id; the egress keeps the static fields under (bucket, id). Later
packets go *compact*: the id, the fields that change (IPv4: TOS and identification;
IPv6: traffic class) and the packet from the TCP header's sequence number (UDP: its
checksum) on. The egress rebuilds the packet byte for byte. A TCP packet over IPv4 saves
20 bytes, over IPv6 42; UDP 22 and 44. Toward a peer that takes them (`trim`), a compact
TCP packet whose urgent pointer is 0 and whose options begin `01 01 08 0a` (timestamps)
goes *trimmed*, without those 6 bytes as well. Toward a peer that takes them (`pack`),
a trimmed packet whose numbers lie near its context's goes *packed* too: the sequence and
acknowledgement numbers in 3 bytes and the two timestamps in 2 (their low bits; the
egress takes the rest from the numbers of the context packet it holds): 6 bytes less.

Nothing is guessed from order: a compact packet names its context, so loss and reordering
across paths cannot misapply one. The ingress defines a context with at least
`DEFINE_COUNT` *context* packets, and for as long after the first as the round trip of
each path one of them took (`settle`, given per packet: a compact packet on a faster path
must not overtake them); then every `REFRESH`-th packet goes whole again, and a context
unused for `IDLE_REDEFINE` is defined again. An id goes to another header only after
`REUSE_AFTER` seconds unused. A compact packet whose context the egress lacks (all its
*context* packets lost) is dropped and counted (`compact_miss`), never rebuilt wrong.

Only what rebuilds exactly is compressed: IPv4 without options, not a fragment, with a
right header checksum, and IPv6 without extension headers, carrying TCP or UDP, with the
lengths in agreement. Anything else travels whole.

The session compresses only packets that wait in their path's queue (the path's rate is
the limit, so the bytes count; a packet sent at once would pay the CPU for nothing).

Sans-I/O: `Compressor.compress` at the ingress, `Decompressor.learn` / `expand` at the
egress.
"""

from __future__ import annotations

import struct
from typing import Final

from braid.core.wire import FLAG_COMPACT, FLAG_CONTEXT, FLAG_PACKED, FLAG_TRIMMED, ProtocolError

DEFINE_COUNT: Final = 4
"""A context's first this-many packets go whole (one may be lost, or a TCP SYN resent)."""
REFRESH: Final = 64
"""Every this-many-th packet of a context goes whole (*context*) again."""
REUSE_AFTER: Final = 2.0
"""A context id goes to another header only after this many seconds unused."""
IDLE_REDEFINE: Final = 5.0
"""A context unused this long is defined again (the egress may have dropped it)."""
INGRESS_LIMIT: Final = 2048
"""Contexts the ingress keeps (beyond them, new flows travel whole)."""
EGRESS_LIMIT: Final = 4096
"""Contexts the egress keeps (the oldest defined goes first)."""
RETRY_AFTER: Final = 0.1
"""After a new context found no room (`INGRESS_LIMIT` contexts in use, or all 256 ids of
its bucket), new flows travel whole this many seconds before the next try (each try
scans up to 64 contexts or 256 ids)."""
REFS: Final = 3
"""A *packed* packet's numbers must rebuild from the numbers of each of its context's last
this-many *context* packets (the egress holds the last that arrived, older ones if the
newest were lost or are still on their way)."""
SETTLE_MIN: Final = 0.02
SETTLE_MAX: Final = 2.0
_SCAN: Final = 64

_V4_TCP: Final = 0
_V4_UDP: Final = 1
_V6_TCP: Final = 2
_V6_UDP: Final = 3

_TRIMMED: Final = FLAG_COMPACT | FLAG_TRIMMED
_PACKED: Final = FLAG_COMPACT | FLAG_TRIMMED | FLAG_PACKED
_TS_PREFIX: Final = b"\x01\x01\x08\x0a"
"""NOP, NOP, then the timestamp option's kind and length: how Linux (and most stacks)
begin the options of every TCP packet of a connection with timestamps."""
_TRIM_GAP: Final = b"\x00\x00" + _TS_PREFIX
"""What a *trimmed* compact TCP packet also leaves out: the urgent pointer (2 bytes,
zero) and _TS_PREFIX (4); in the carried rest (from the TCP sequence number on) they
are bytes 14-19."""

_V4_HEAD = struct.Struct("!BBHH4sH12s")  # version/IHL .. addresses, ports
_V6_HEAD = struct.Struct("!BB2sH38s")  # version/TC/flow, payload length, nh .. ports
_U16 = struct.Struct("!H")
_WORDS4 = struct.Struct("!HH")
_WORDS8 = struct.Struct("!HHHH")
_NUMBERS = struct.Struct("!II")
_PACKED_V4 = struct.Struct("!BBH3s3s6sHH")  # id, TOS, identification, seq, ack, .., TS
_PACKED_V6 = struct.Struct("!BB3s3s6sHH")  # id, traffic class, seq, ack, .., TS
_REBUILT = struct.Struct("!II6s6sII")  # seq, ack, .., urgent pointer and TS prefix, TS
_M32: Final = 0xFFFFFFFF
_H24: Final = 1 << 23
_H16: Final = 1 << 15


def _numbers(packet: bytes, rest: int) -> tuple[int, int, int, int] | None:
    """The numbers a *packed* TCP packet carries in part: sequence, acknowledgement, and
    the two 4-byte words after the timestamp option's prefix (TSval, TSecr: taken as
    numbers whatever they hold); None if the packet is too short to hold them."""
    if len(packet) < rest + 28:
        return None
    seq, ack = _NUMBERS.unpack_from(packet, rest)
    tsval, tsecr = _NUMBERS.unpack_from(packet, rest + 20)
    return seq, ack, tsval, tsecr


def _near(numbers: tuple[int, int, int, int], refs: list[tuple[int, ...] | None]) -> bool:
    """True if every number rebuilds from its low bits against every reference: within
    -2^23..2^23-1 (sequence, acknowledgement) and -2^15..2^15-1 (timestamps) of it,
    modulo 2^32."""
    seq, ack, tsval, tsecr = numbers
    for ref in refs:
        if ref is None:
            return False
        if (
            (seq - ref[0] + _H24) & _M32 >= 2 * _H24
            or (ack - ref[1] + _H24) & _M32 >= 2 * _H24
            or (tsval - ref[2] + _H16) & _M32 >= 2 * _H16
            or (tsecr - ref[3] + _H16) & _M32 >= 2 * _H16
        ):
            return False
    return True


def _v4_header(base: int, head: bytes, tail: bytes, tos: int, ident: int, total: int) -> bytes:
    """An IPv4 header and the ports from a context's fixed part (`base`: its checksum's
    sum, `head`, `tail`) and the changing fields, its checksum computed."""
    s = base + tos + total + ident
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return _V4_HEAD.pack(0x45, tos, total, ident, head, ~s & 0xFFFF, tail)


def _v6_header(flow: int, head: bytes, tail: bytes, tc: int, length: int) -> bytes:
    """An IPv6 header and the ports from a context's fixed part (`flow`: the flow label's
    top bits, `head`, `tail`), the traffic class and the payload length."""
    return _V6_HEAD.pack(0x60 | tc >> 4, (tc & 0x0F) << 4 | flow, head, length, tail)


def _widen(low: int, ref: int, half: int) -> int:
    """The 32-bit number nearest `ref` whose low bits (2 * half of them) are `low`."""
    return (ref + ((low - ref + half) & (2 * half - 1)) - half) & _M32


def _parse(packet: bytes) -> tuple[bytes, bytes, int] | None:
    """(static key, changing fields, offset of the carried rest) or None. The key is 16
    bytes for IPv4 (flags .. protocol, addresses, ports), 41 for IPv6 (flow label, next
    header .. ports): its length tells the family, the protocol byte in it the kind."""
    size = len(packet)
    if size < 28:
        return None
    first = packet[0]
    if first == 0x45:
        if packet[6] & 0x3F or packet[7] or (packet[2] << 8 | packet[3]) != size:
            return None  # a fragment (MF or an offset) or a length that disagrees
        if int.from_bytes(packet[:20], "big") % 0xFFFF:
            # A wrong header checksum (the egress would not rebuild it). The words' ones'
            # complement sum is 0xFFFF exactly when the header is right, and it is the
            # header's value modulo 0xFFFF (2**16 = 1 modulo 0xFFFF).
            return None
        proto = packet[9]
        if proto == 6:
            return packet[6:10] + packet[12:24], packet[1:2] + packet[4:6], 24
        if proto == 17 and (packet[24] << 8 | packet[25]) == size - 20:
            return packet[6:10] + packet[12:24], packet[1:2] + packet[4:6], 26
        return None
    if first >> 4 == 6 and size >= 48:
        if (packet[4] << 8 | packet[5]) != size - 40:
            return None
        nh = packet[6]
        if nh == 6:
            rest = 44
        elif nh == 17 and (packet[44] << 8 | packet[45]) == size - 40:
            rest = 46
        else:
            return None
        tc = ((first & 0x0F) << 4) | (packet[1] >> 4)
        return bytes((packet[1] & 0x0F,)) + packet[2:4] + packet[6:44], bytes((tc,)), rest
    return None


class _Entry:
    __slots__ = (
        "bucket",
        "cid",
        "count",
        "defined",
        "last_used",
        "refs",
        "settled",
        "tag",
        "whole",
    )

    def __init__(self, bucket: int, cid: int, now: float) -> None:
        self.bucket = bucket
        self.cid = cid
        self.tag = bytes((cid,))
        self.count = 0
        self.last_used = now
        self.defined = now
        """When the context was (last) defined."""
        self.settled = now
        """Until when its packets go whole."""
        self.whole = DEFINE_COUNT
        """How many more go whole at least."""
        self.refs: list[tuple[int, ...] | None] = []
        """The numbers (`_numbers`) of its last `REFS` *context* packets, oldest first."""

    def define(self, now: float) -> None:
        self.defined = self.settled = now
        self.whole = DEFINE_COUNT


class Compressor:
    """The ingress side: which packets go whole, which compact, under which id."""

    def __init__(
        self, limit: int = INGRESS_LIMIT, *, trim: bool = False, pack: bool = False
    ) -> None:
        self._limit = limit
        self.trim = trim
        """Also send TCP packets *trimmed* (the peer said it takes them: FEATURE_TRIM)."""
        self.pack = pack
        """Also send trimmed packets *packed* (the peer said it takes them: FEATURE_PACK)."""
        self._entries: dict[bytes, _Entry] = {}
        self._ids: dict[int, dict[int, bytes]] = {}
        self._next: dict[int, int] = {}
        self._retry = -1.0
        self.compacted = 0
        """Packets sent compact."""
        self.packed = 0
        """Of those, packets sent packed."""
        self.saved = 0
        """Bytes the compact packets saved."""

    def __len__(self) -> int:
        return len(self._entries)

    def reset(self) -> None:
        """Forget every context (the peer may have restarted: they are defined again).
        The next id of each bucket stays, so no id goes at once to another header."""
        self._entries.clear()
        self._ids.clear()
        self._retry = -1.0

    def compress(
        self, bucket: int, packet: bytes, now: float, settle: float, whole: int = 0
    ) -> tuple[int, bytes]:
        """(DATA flags, payload) for `packet` of flow `bucket`, sent on a path where a
        packet may take up to `settle` seconds longer than on the fastest: (0, packet)
        when it travels as it is; `whole` true: never compact (a resent packet)."""
        parsed = _parse(packet)
        if parsed is None:
            return 0, packet
        key, changing, rest = parsed
        entry = self._entries.get(key)
        if entry is None:
            entry = self._allocate(key, bucket, now)
            if entry is None:
                return 0, packet
        elif entry.bucket != bucket:
            return 0, packet  # (a bucket that is no hash of these fields: leave it)
        elif now - entry.last_used > IDLE_REDEFINE:
            entry.define(now)
        entry.last_used = now
        count = entry.count = entry.count + 1
        if entry.whole > 0 or now < entry.settled:
            # Defining: whole until `DEFINE_COUNT` went and the slowest path one of them
            # took has had time to bring them (counted from the first).
            entry.whole -= 1
            until = entry.defined + min(max(settle, SETTLE_MIN), SETTLE_MAX)
            if until > entry.settled:
                entry.settled = until
            return self._context(entry, key, packet, rest)
        if whole or not count % REFRESH:
            return self._context(entry, key, packet, rest)
        self.compacted += 1
        if (
            self.trim
            and key[3] == 6  # TCP (the protocol byte of either key)
            and len(packet) >= rest + 20
            and packet[rest + 14] == 0
            and packet[rest + 15] == 0
            and packet[rest + 16 : rest + 20] == _TS_PREFIX
        ):
            if self.pack:
                numbers = _numbers(packet, rest)
                if numbers is not None and entry.refs and _near(numbers, entry.refs):
                    return _PACKED, self._packed(entry, changing, packet, rest, numbers)
            self.saved += rest - len(changing) - 1 + len(_TRIM_GAP)
            return _TRIMMED, entry.tag + changing + packet[rest : rest + 14] + packet[rest + 20 :]
        self.saved += rest - len(changing) - 1
        return FLAG_COMPACT, entry.tag + changing + packet[rest:]

    def _context(self, entry: _Entry, key: bytes, packet: bytes, rest: int) -> tuple[int, bytes]:
        """A *context* packet; its numbers join the entry's references (TCP only)."""
        if key[3] == 6:
            refs = entry.refs
            refs.append(_numbers(packet, rest))
            if len(refs) > REFS:
                del refs[0]
        return FLAG_CONTEXT, entry.tag + packet

    def _packed(
        self,
        entry: _Entry,
        changing: bytes,
        packet: bytes,
        rest: int,
        numbers: tuple[int, int, int, int],
    ) -> bytes:
        seq, ack, tsval, tsecr = numbers
        self.packed += 1
        if rest == 24:
            head = _PACKED_V4.pack(
                entry.cid,
                changing[0],
                changing[1] << 8 | changing[2],
                (seq & 0xFFFFFF).to_bytes(3, "big"),
                (ack & 0xFFFFFF).to_bytes(3, "big"),
                packet[32:38],
                tsval & 0xFFFF,
                tsecr & 0xFFFF,
            )
        else:
            head = _PACKED_V6.pack(
                entry.cid,
                changing[0],
                (seq & 0xFFFFFF).to_bytes(3, "big"),
                (ack & 0xFFFFFF).to_bytes(3, "big"),
                packet[52:58],
                tsval & 0xFFFF,
                tsecr & 0xFFFF,
            )
        self.saved += rest + 28 - len(head)
        return b"".join((head, memoryview(packet)[rest + 28 :]))

    def _allocate(self, key: bytes, bucket: int, now: float) -> _Entry | None:
        if now < self._retry:
            return None  # (the last try found no room: new flows go whole for a while)
        entry = self._find_room(key, bucket, now)
        if entry is None:
            self._retry = now + RETRY_AFTER
        return entry

    def _find_room(self, key: bytes, bucket: int, now: float) -> _Entry | None:
        entries = self._entries
        old = now - REUSE_AFTER
        if len(entries) >= self._limit:
            # Free the first long-unused context among the oldest defined; move the
            # ones still in use to the end.
            for _ in range(min(_SCAN, len(entries))):
                first = next(iter(entries))
                victim = entries.pop(first)
                if victim.last_used <= old:
                    del self._ids[victim.bucket][victim.cid]
                    break
                entries[first] = victim
            else:
                return None
        ids = self._ids.setdefault(bucket, {})
        start = self._next.get(bucket, 0)
        for step in range(256):
            cid = (start + step) & 0xFF
            holder = ids.get(cid)
            if holder is not None:
                held = entries[holder]
                if held.last_used > old:
                    continue
                del entries[holder]
            ids[cid] = key
            self._next[bucket] = (cid + 1) & 0xFF
            entry = entries[key] = _Entry(bucket, cid, now)
            return entry
        return None


def _sum16(data: bytes) -> int:
    total = 0
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
    return total


class Decompressor:
    """The egress side: contexts by (bucket, id), packets rebuilt from them."""

    def __init__(self, limit: int = EGRESS_LIMIT) -> None:
        self._limit = limit
        # (bucket << 8 | id) -> (kind, IPv4: checksum base / IPv6: flow label's high
        # nibble, the bytes before the checksum / the flow label's low bytes, the rest,
        # TCP: the context packet's numbers for *packed* packets, or None)
        self._contexts: dict[int, tuple[int, int, bytes, bytes, tuple[int, ...] | None]] = {}
        self.expanded = 0
        """Compact packets rebuilt."""

    def __len__(self) -> int:
        return len(self._contexts)

    def learn(self, bucket: int, payload: bytes) -> bytes:
        """The inner packet of a *context* DATA payload; keeps its context. Raises
        ProtocolError("bad_compact") for a packet that cannot be a context."""
        packet = payload[1:]
        parsed = _parse(packet)
        if parsed is None:
            raise ProtocolError("bad_compact")
        static = parsed[0]
        numbers = _numbers(packet, parsed[2]) if static[3] == 6 else None
        context: tuple[int, int, bytes, bytes, tuple[int, ...] | None]
        if len(static) == 16:
            # IPv4: the checksum's fixed part (version/IHL, flags .. protocol, addresses).
            base = 0x4500 + sum(_WORDS4.unpack_from(static)) + sum(_WORDS8.unpack_from(static, 4))
            kind = _V4_TCP if static[3] == 6 else _V4_UDP
            context = (kind, base, static[:4], static[4:], numbers)
        else:
            kind = _V6_TCP if static[3] == 6 else _V6_UDP
            context = (kind, static[0], static[1:3], static[3:], numbers)
        key = bucket << 8 | payload[0]
        contexts = self._contexts
        contexts.pop(key, None)
        contexts[key] = context
        if len(contexts) > self._limit:
            del contexts[next(iter(contexts))]
        return packet

    def expand(
        self, bucket: int, payload: bytes, trimmed: bool = False, packed: bool = False
    ) -> bytes:
        """The inner packet a compact DATA payload stands for (`trimmed`, `packed`: flagged
        so). Raises ProtocolError("compact_miss") without its context (or, packed, without
        the numbers of a TCP context), ("bad_compact") if short, or trimmed and not TCP."""
        context = self._contexts.get(bucket << 8 | payload[0])
        if context is None:
            raise ProtocolError("compact_miss")
        kind, base, head, tail, numbers = context
        if packed:
            if kind != _V4_TCP and kind != _V6_TCP:
                raise ProtocolError("bad_compact")
            if numbers is None:
                raise ProtocolError("compact_miss")  # (a context the ingress did not mean)
            return self._unpack(kind, base, head, tail, payload, numbers)
        size = len(payload)
        cut = 0
        if trimmed:
            # The urgent pointer (0) and the timestamp option's prefix go back after the
            # id, the changing fields and 14 bytes of the TCP header (joined below, in
            # the one copy that builds the packet).
            cut = (4 if kind == _V4_TCP else 2) + 14
            if (kind != _V4_TCP and kind != _V6_TCP) or size < cut:
                raise ProtocolError("bad_compact")
            size += len(_TRIM_GAP)
        # (Shorter than the ingress makes them, from packets of 28 or 48 bytes at least:
        # bad_compact.)
        if kind <= _V4_UDP:
            if size < (8 if kind == _V4_TCP else 6):
                raise ProtocolError("bad_compact")
            total = size + (20 if kind == _V4_TCP else 22)
            header = _v4_header(base, head, tail, payload[1], payload[2] << 8 | payload[3], total)
            self.expanded += 1
            if kind == _V4_TCP:
                if cut:
                    view = memoryview(payload)
                    return b"".join((header, view[4:cut], _TRIM_GAP, view[cut:]))
                return header + payload[4:]
            return header + _U16.pack(total - 20) + payload[4:]
        if size < (6 if kind == _V6_TCP else 4):
            raise ProtocolError("bad_compact")
        length = size + 2 if kind == _V6_TCP else size + 4
        fixed = _v6_header(base, head, tail, payload[1], length)
        self.expanded += 1
        if kind == _V6_TCP:
            if cut:
                view = memoryview(payload)
                return b"".join((fixed, view[2:cut], _TRIM_GAP, view[cut:]))
            return fixed + payload[2:]
        return fixed + _U16.pack(length) + payload[2:]

    def _unpack(
        self,
        kind: int,
        base: int,
        head: bytes,
        tail: bytes,
        payload: bytes,
        numbers: tuple[int, ...],
    ) -> bytes:
        """The inner packet a *packed* payload stands for, built in one copy."""
        seq, ack, tsval, tsecr = numbers
        if kind == _V4_TCP:
            cut = _PACKED_V4.size
            if len(payload) < cut:
                raise ProtocolError("bad_compact")
            _, tos, ident, low_seq, low_ack, middle, low_tsval, low_tsecr = _PACKED_V4.unpack_from(
                payload
            )
        else:
            cut = _PACKED_V6.size
            if len(payload) < cut:
                raise ProtocolError("bad_compact")
            _, tos, low_seq, low_ack, middle, low_tsval, low_tsecr = _PACKED_V6.unpack_from(payload)
        numbers_part = _REBUILT.pack(
            _widen(int.from_bytes(low_seq, "big"), seq, _H24),
            _widen(int.from_bytes(low_ack, "big"), ack, _H24),
            middle,
            _TRIM_GAP,
            _widen(low_tsval, tsval, _H16),
            _widen(low_tsecr, tsecr, _H16),
        )
        # The TCP header from its sequence number on, then the rest as carried.
        size = _REBUILT.size + len(payload) - cut
        if kind == _V4_TCP:
            fixed = _v4_header(base, head, tail, tos, ident, size + 24)  # (+ header, ports)
        else:
            fixed = _v6_header(base, head, tail, tos, size + 4)
        self.expanded += 1
        return b"".join((fixed, numbers_part, memoryview(payload)[cut:]))
