"""Inner header compression (braid.core.compact): what is compressed, that every packet is
rebuilt byte for byte, and that a compact packet is never rebuilt from the wrong context."""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from braid.core.compact import (
    DEFINE_COUNT,
    IDLE_REDEFINE,
    REFRESH,
    REFS,
    RETRY_AFTER,
    REUSE_AFTER,
    SETTLE_MIN,
    Compressor,
    Decompressor,
)
from braid.core.session import SessionConfig, TunnelSession
from braid.core.wire import (
    FEATURE_COMPACT,
    FEATURE_PACK,
    FEATURE_TRIM,
    FLAG_COMPACT,
    FLAG_CONTEXT,
    FLAG_PACKED,
    FLAG_TRIMMED,
    ProtocolError,
)

from .pairnet import LOCAL, REMOTE, LinkProfile, PairNet, tcp_packet, udp_packet

SETTLE = 0.05


def _checksum(data: bytes) -> int:
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv4(
    proto: int,
    body: bytes,
    *,
    src: str = "10.0.0.1",
    dst: str = "10.1.0.1",
    tos: int = 0,
    ident: int = 0,
    ttl: int = 64,
    frag: int = 0x4000,
    options: bytes = b"",
) -> bytes:
    """An IPv4 packet with a right header checksum (`options`: IHL > 5)."""
    ihl = 5 + len(options) // 4
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x40 | ihl,
        tos,
        ihl * 4 + len(body),
        ident,
        frag,
        ttl,
        proto,
        0,
        ipaddress.IPv4Address(src).packed,
        ipaddress.IPv4Address(dst).packed,
    )
    header += options
    return header[:10] + struct.pack("!H", _checksum(header)) + header[12:] + body


def ipv6(
    nh: int, body: bytes, *, src: str = "fd00::1", dst: str = "fd01::1", tc: int = 0, flow: int = 0
) -> bytes:
    first = (6 << 28) | (tc << 20) | flow
    return (
        struct.pack("!IHBB", first, len(body), nh, 64)
        + ipaddress.IPv6Address(src).packed
        + ipaddress.IPv6Address(dst).packed
        + body
    )


def tcp(
    sport: int, seq: int, data: bytes, *, options: bytes = b"", flags: int = 0x18, urgent: int = 0
) -> bytes:
    offset = (20 + len(options)) // 4
    return (
        struct.pack("!HHIIBBHHH", sport, 443, seq, 7, offset << 4, flags, 502, 0xBEEF, urgent)
        + options
        + data
    )


def udp(sport: int, data: bytes, *, length: int | None = None) -> bytes:
    return (
        struct.pack("!HHHH", sport, 53, 8 + len(data) if length is None else length, 0x1234) + data
    )


TIMESTAMPS = b"\x01\x01\x08\x0a" + bytes(range(8))
TRIMMED = FLAG_COMPACT | FLAG_TRIMMED
PACKED = TRIMMED | FLAG_PACKED


def _send(
    compressor: Compressor, decompressor: Decompressor, packet: bytes, now: float, bucket: int = 9
) -> tuple[int, int]:
    """Compress at `now`, rebuild; (flags, bytes on the wire)."""
    flags, payload = compressor.compress(bucket, packet, now, SETTLE)
    if flags == FLAG_CONTEXT:
        assert decompressor.learn(bucket, payload) == packet
    elif flags == FLAG_COMPACT:
        assert decompressor.expand(bucket, payload) == packet
    elif flags == TRIMMED:
        assert decompressor.expand(bucket, payload, trimmed=True) == packet
    elif flags == PACKED:
        assert decompressor.expand(bucket, payload, trimmed=True, packed=True) == packet
    else:
        assert payload is packet
    return flags, len(payload)


@pytest.mark.parametrize(
    ("trim", "pack"), [(False, False), (True, False), (True, True)], ids=["", "trim", "pack"]
)
@pytest.mark.parametrize(
    ("make", "saved", "tcp_ts"),
    [
        (lambda i: ipv4(6, tcp(4000, i, b"x" * 1348, options=TIMESTAMPS), ident=i), 20, True),
        (lambda i: ipv4(17, udp(4000, b"v" * 160), ident=i, tos=0xB8), 22, False),
        (lambda i: ipv6(6, tcp(4000, i, b"x" * 1328, options=TIMESTAMPS), flow=0x12345), 42, True),
        (lambda i: ipv6(17, udp(4000, b"v" * 160), tc=0xB9), 44, False),
        (lambda i: ipv4(6, tcp(4000, i, b"x" * 1360), ident=i), 20, False),
    ],
    ids=["ipv4-tcp", "ipv4-udp", "ipv6-tcp", "ipv6-udp", "ipv4-tcp-no-options"],
)
def test_a_flow_goes_whole_while_it_settles_then_compact(
    make: Callable[[int], bytes], saved: int, tcp_ts: bool, trim: bool, pack: bool
) -> None:
    """A flow's packets go whole (*context*, one byte longer: the id) for `settle`
    seconds, then compact (IPv4 TCP 20 bytes shorter, UDP 22; IPv6 42 and 44), every
    REFRESH-th packet whole again; each one rebuilt to the same bytes. Toward a peer that
    takes them (`trim`), TCP packets with timestamps go *trimmed*: 6 bytes shorter still;
    and (`pack`) *packed*: 6 bytes shorter again (IPv4 32 in all, IPv6 54)."""
    compressor, decompressor = Compressor(trim=trim, pack=pack), Decompressor()
    if pack and tcp_ts:
        compact, saved = PACKED, saved + 12
    elif trim and tcp_ts:
        compact, saved = TRIMMED, saved + 6
    else:
        compact = FLAG_COMPACT
    forms = []
    for i in range(3 * REFRESH):
        packet = make(i)
        flags, size = _send(compressor, decompressor, packet, i * 0.01)
        forms.append(flags)
        assert size == len(packet) + 1 if flags == FLAG_CONTEXT else len(packet) - saved
    settled = sum(1 for i in range(3 * REFRESH) if i * 0.01 < SETTLE)
    assert forms[:settled] == [FLAG_CONTEXT] * settled
    whole = [i + 1 for i, f in enumerate(forms) if f == FLAG_CONTEXT][settled:]
    assert whole == [REFRESH, 2 * REFRESH, 3 * REFRESH]
    assert set(forms[settled:]) == {FLAG_CONTEXT, compact}
    assert compressor.compacted == 3 * REFRESH - settled - 3
    assert compressor.saved == saved * compressor.compacted
    assert decompressor.expanded == compressor.compacted and len(compressor) == 1
    assert compressor.packed == (compressor.compacted if compact == PACKED else 0)


@settings(max_examples=300, deadline=None)
@given(
    version=st.sampled_from([4, 6]),
    proto=st.sampled_from([6, 17]),
    tos=st.integers(0, 255),
    ident=st.integers(0, 0xFFFF),
    ttl=st.integers(1, 255),
    df=st.booleans(),
    sport=st.integers(0, 0xFFFF),
    seq=st.integers(0, 2**32 - 1),
    options=st.sampled_from([b"", TIMESTAMPS, b"\x02\x04\x05\xb4", TIMESTAMPS[:4]]),
    urgent=st.sampled_from([0, 1, 0x100]),
    data=st.binary(max_size=1400),
    trim=st.booleans(),
    pack=st.booleans(),
)
# (Found by this test in a clean-clone suite, 2026-12-02: a TCP packet without options
# whose payload begins with the timestamp option's prefix goes trimmed, and rebuilds.)
@example(
    version=4,
    proto=6,
    tos=0,
    ident=0,
    ttl=1,
    df=False,
    sport=0,
    seq=0,
    options=b"",
    urgent=0,
    data=b"\x01\x01\x08\n",
    trim=True,
    pack=False,
)
def test_any_tcp_or_udp_packet_is_rebuilt_byte_for_byte(
    version: int,
    proto: int,
    tos: int,
    ident: int,
    ttl: int,
    df: bool,
    sport: int,
    seq: int,
    options: bytes,
    urgent: int,
    data: bytes,
    trim: bool,
    pack: bool,
) -> None:
    body = tcp(sport, seq, data, options=options, urgent=urgent) if proto == 6 else udp(sport, data)
    if version == 4:
        packet = ipv4(proto, body, tos=tos, ident=ident, ttl=ttl, frag=0x4000 if df else 0)
    else:
        packet = ipv6(proto, body, tc=tos, flow=ident * 13)
    compressor, decompressor = Compressor(trim=trim, pack=pack), Decompressor()
    for _ in range(DEFINE_COUNT):
        assert _send(compressor, decompressor, packet, 0.0)[0] == FLAG_CONTEXT
    flags, _ = _send(compressor, decompressor, packet, 1.0)
    # Trimmed: TCP whose urgent pointer is 0 and whose 4 bytes after the fixed header
    # are the timestamp option's prefix (options or, without options, the payload: the
    # rule is on bytes, and the egress puts them back either way); packed: those with
    # the 8 bytes after the prefix (the same numbers as the context's).
    trimmable = proto == 6 and not urgent and (options + data)[:4] == TIMESTAMPS[:4]
    if trim and trimmable:
        assert flags == (PACKED if pack and len(body) >= 32 else TRIMMED)
    else:
        assert flags == FLAG_COMPACT


def test_what_would_not_rebuild_exactly_goes_as_it_is() -> None:
    """ICMP, IP options, fragments, an IPv6 extension header, lengths that disagree, a
    wrong IPv4 header checksum, a packet too short: no context, the packet unchanged."""
    body = tcp(4000, 1, b"x" * 100)
    wrong_sum = bytearray(ipv4(6, body))
    wrong_sum[10] ^= 0xFF
    short_udp = ipv4(17, udp(4000, b"x" * 20, length=12))
    cases = [
        ipv4(1, b"\x08\x00" + b"p" * 62),  # ICMP echo
        ipv4(6, body, options=b"\x01\x01\x01\x00"),
        ipv4(6, body, frag=0x2000),  # more fragments
        ipv4(6, body, frag=0x0010),  # a later fragment
        ipv6(0, b"\x06\x00" + bytes(6) + body),  # hop-by-hop, then TCP
        ipv6(58, b"\x80\x00" + b"p" * 62),  # ICMPv6
        bytes(wrong_sum),
        short_udp,
        ipv4(6, b"\x0f\xa0"),  # 22 bytes: no room for the ports
        b"\x45",
        b"",
    ]
    compressor = Compressor()
    for packet in cases:
        for now in (0.0, 1.0):
            assert compressor.compress(9, packet, now, SETTLE) == (0, packet)
    assert len(compressor) == 0 and compressor.compacted == 0
    # A truncated IPv4 length (the packet is longer than its header says) is not rebuilt
    # either.
    packet = ipv4(6, body) + b"pad"
    assert compressor.compress(9, packet, 2.0, SETTLE) == (0, packet)


def test_a_compact_packet_without_its_context_is_dropped_not_rebuilt() -> None:
    """The egress never saw the context (lost, or it restarted): `compact_miss`; a short
    compact payload or a *context* packet that is no context: `bad_compact`."""
    compressor, decompressor = Compressor(), Decompressor()
    packet = ipv4(6, tcp(4000, 1, b"x" * 500))
    for _ in range(DEFINE_COUNT):
        compressor.compress(9, packet, 0.0, SETTLE)  # the context, lost
    flags, payload = compressor.compress(9, packet, 1.0, SETTLE)
    assert flags == FLAG_COMPACT
    with pytest.raises(ProtocolError) as exc:
        decompressor.expand(9, payload)
    assert exc.value.reason == "compact_miss"
    with pytest.raises(ProtocolError) as exc:
        decompressor.expand(8, payload)  # (the id names a context of its bucket only)
    assert exc.value.reason == "compact_miss"
    decompressor.learn(9, compressor.compress(9, packet, 1.0, SETTLE, whole=True)[1])
    assert decompressor.expand(9, payload) == packet
    for short in (payload[:5], payload[:1]):
        with pytest.raises(ProtocolError) as exc:
            decompressor.expand(9, short)
        assert exc.value.reason == "bad_compact"
    with pytest.raises(ProtocolError) as exc:
        decompressor.learn(9, b"\x00" + ipv4(1, b"ping"))
    assert exc.value.reason == "bad_compact"


def _flow(
    seq: int, ack: int, tsval: int, tsecr: int, ident: int, *, version: int = 4, size: int = 1348
) -> bytes:
    """A full-size TCP segment with timestamps (numbers taken modulo their width)."""
    body = struct.pack(
        "!HHIIBBHHH", 4000, 443, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 0x80, 0x10, 502, 0xBEEF, 0
    )
    body += _stamps(tsval, tsecr) + bytes(range(256)) * (size // 256) + b"z" * (size % 256)
    return ipv4(6, body, ident=ident & 0xFFFF) if version == 4 else ipv6(6, body, flow=0x54321)


@pytest.mark.parametrize("version", [4, 6])
def test_packed_numbers_rebuild_from_any_recent_context_else_the_packet_goes_trimmed(
    version: int,
) -> None:
    """A *packed* packet carries the low bits of its sequence and acknowledgement numbers
    (24) and timestamps (16): the egress takes the rest from the context it holds. The
    ingress packs a packet only if it rebuilds from each of the last
    REFS *context* packets (the egress may hold any of them: the newest lost or late);
    a number further away than the bits reach, on either side, sends it trimmed instead.
    Numbers that wrap past 2^32 rebuild too."""
    base = (2**32 - 3000, 2**32 - 10, 2**32 - 5, 2**32 - 2, 0xFFF0)
    compressor = Compressor(trim=True, pack=True)
    contexts: list[bytes] = []
    for _ in range(DEFINE_COUNT):
        flags, payload = compressor.compress(9, _flow(*base, version=version), 0.0, SETTLE)
        assert flags == FLAG_CONTEXT
        contexts.append(payload)
    # Every egress holding one of the last REFS context packets rebuilds the same bytes.
    egresses = []
    for held in contexts[-REFS:]:
        egress = Decompressor()
        egress.learn(9, held)
        egresses.append(egress)

    def send(numbers: tuple[int, ...]) -> int:
        packet = _flow(*numbers, version=version)
        flags, payload = compressor.compress(9, packet, 1.0, SETTLE)
        assert flags in (PACKED, TRIMMED)
        for egress in egresses:
            assert egress.expand(9, payload, True, flags == PACKED) == packet
        return flags

    seq, ack, tsval, tsecr, ident = base
    assert send(base) == PACKED
    # Further on, across the wrap of every number: packed.
    assert send((seq + 4000, ack + 20, tsval + 10, tsecr + 3, ident + 20)) == PACKED
    far = {
        0: (2**23, -(2**23) - 1),
        1: (2**23, -(2**23) - 1),
        2: (2**15, -(2**15) - 1),
        3: (2**15, -(2**15) - 1),
    }
    for field, jumps in far.items():
        for jump in jumps:
            near = jump - 1 if jump > 0 else jump + 1
            for offset, form in ((near, PACKED), (jump, TRIMMED)):
                numbers = list(base)
                numbers[field] += offset
                assert send(tuple(numbers)) == form, (field, offset)
    # The IPv4 identification travels whole: any value.
    assert send((seq, ack, tsval, tsecr, ident + 30000)) == PACKED


@pytest.mark.parametrize("field", [0, 1, 2, 3])
def test_a_packed_number_must_rebuild_from_the_oldest_recent_context_too(field: int) -> None:
    """Context packets whose numbers move on (a flow's refresh every REFRESH packets): a
    number near the newest context's but out of reach of the oldest one still recent goes
    trimmed, since the egress may hold that one; one within reach of both goes packed and
    rebuilds from each."""
    step = 3 << 20 if field < 2 else 3 << 12  # (3/8 of each number's reach)
    compressor = Compressor(trim=True, pack=True)
    held = []
    for i in range(DEFINE_COUNT):
        numbers = [7, 8, 9, 10, 11]
        numbers[field] += i * step
        flags, payload = compressor.compress(9, _flow(*numbers), 0.0, SETTLE)
        assert flags == FLAG_CONTEXT
        held.append(payload)
    egresses = [Decompressor() for _ in range(REFS)]
    for egress, payload in zip(egresses, held[-REFS:], strict=True):
        egress.learn(9, payload)
    for ahead, form in ((step * (DEFINE_COUNT - 2), PACKED), (step * (DEFINE_COUNT + 1), TRIMMED)):
        numbers = [7, 8, 9, 10, 11]
        numbers[field] += ahead
        packet = _flow(*numbers)
        flags, payload = compressor.compress(9, packet, 1.0, SETTLE)
        assert flags == form
        for egress in egresses:
            assert egress.expand(9, payload, True, flags == PACKED) == packet


def test_a_packed_packet_whose_context_has_no_numbers_is_a_miss() -> None:
    """The egress holds a context from a TCP packet too short to give the numbers (a SYN
    the ingress meant another context packet to replace): `compact_miss`, never a guess.
    A packed packet on a UDP context, or too short: `bad_compact`."""
    compressor = Compressor(trim=True, pack=True)
    packet = _flow(1000, 2000, 3000, 4000, 5)
    for _ in range(DEFINE_COUNT):
        _, context = compressor.compress(9, packet, 0.0, SETTLE)
    flags, payload = compressor.compress(9, packet, 1.0, SETTLE)
    assert flags == PACKED
    egress = Decompressor()
    egress.learn(9, bytes((payload[0],)) + ipv4(6, tcp(4000, 1, b"")))  # 40 bytes
    with pytest.raises(ProtocolError, match="compact_miss"):
        egress.expand(9, payload, True, True)
    egress.learn(9, context)
    assert egress.expand(9, payload, True, True) == packet
    with pytest.raises(ProtocolError, match="bad_compact"):
        egress.expand(9, payload[:18], True, True)
    egress.learn(9, bytes((payload[0],)) + ipv4(17, udp(4000, b"x" * 40)))
    with pytest.raises(ProtocolError, match="bad_compact"):
        egress.expand(9, payload, True, True)


def test_flows_that_share_a_bucket_get_their_own_ids() -> None:
    """Two flows in one bucket (a hash collision) each get a context id; their packets,
    interleaved, rebuild to their own headers."""
    compressor, decompressor = Compressor(), Decompressor()
    flows = [ipv4(6, tcp(4000 + k, 0, b"x" * 200), dst=f"10.1.0.{k + 1}") for k in range(3)]
    ids = set()
    for step in range(60):
        packet = flows[step % 3]
        flags, payload = compressor.compress(5, packet, step * 0.01, SETTLE)
        ids.add(payload[0])
        rebuilt = (decompressor.learn if flags == FLAG_CONTEXT else decompressor.expand)(5, payload)
        assert rebuilt == packet
    assert len(ids) == 3 and compressor.compacted > 30


def test_an_id_goes_to_another_header_only_after_it_was_unused_for_a_while() -> None:
    """A context id in use is never given to another header; the ingress, full, sends new
    flows whole until a context has been unused for REUSE_AFTER; a reused id's old packets
    (late on a slow path) can then no longer be in flight."""
    compressor = Compressor(limit=2)
    a = ipv4(6, tcp(1, 0, b"a" * 100))
    b = ipv4(6, tcp(2, 0, b"b" * 100))
    c = ipv4(6, tcp(3, 0, b"c" * 100))
    ida = compressor.compress(5, a, 0.0, SETTLE)[1][0]
    idb = compressor.compress(5, b, 0.0, SETTLE)[1][0]
    assert ida != idb
    assert compressor.compress(5, c, 1.0, SETTLE) == (0, c)  # full, both in use
    compressor.compress(5, a, 1.5, SETTLE)
    # b was last used at 0.0: free at REUSE_AFTER; c takes a new id (not b's at once).
    flags, payload = compressor.compress(5, c, REUSE_AFTER + 0.1, SETTLE)
    assert flags == FLAG_CONTEXT and payload[0] not in (ida, idb) and len(compressor) == 2
    # After a try that found no room, new flows go whole for RETRY_AFTER before the next
    # try (a try scans up to 64 contexts).
    compressor = Compressor(limit=2)
    compressor.compress(5, a, 0.0, SETTLE)
    compressor.compress(5, b, 0.0, SETTLE)
    failed = REUSE_AFTER - 0.05
    assert compressor.compress(5, c, failed, SETTLE) == (0, c)
    # a and b are unused long enough now, but the next try is not yet due.
    assert compressor.compress(5, c, failed + RETRY_AFTER * 0.9, SETTLE) == (0, c)
    assert compressor.compress(5, c, failed + RETRY_AFTER * 1.1, SETTLE)[0] == FLAG_CONTEXT
    # 256 ids per bucket: once each was used, the oldest unused comes back.
    compressor = Compressor()
    seen = []
    for k in range(300):
        packet = ipv4(6, tcp(1000 + k, 0, b"x"))
        seen.append(compressor.compress(5, packet, k * REUSE_AFTER, SETTLE)[1][0])
    assert seen[:256] == list(range(256)) and seen[256:260] == [0, 1, 2, 3]


def test_a_context_unused_for_long_and_after_reset_goes_whole_again() -> None:
    """A context is defined by DEFINE_COUNT whole packets and for `settle` after the first;
    again when the egress may have dropped it (after IDLE_REDEFINE unused, or the peer
    restarted: `reset`), under a new id after a reset (an old compact packet in flight
    cannot take the new context)."""
    compressor = Compressor()
    packet = ipv4(6, tcp(4000, 1, b"x" * 100))
    first = compressor.compress(9, packet, 0.0, SETTLE)[1][0]
    for _ in range(DEFINE_COUNT - 1):
        assert compressor.compress(9, packet, 0.01, SETTLE)[0] == FLAG_CONTEXT
    assert compressor.compress(9, packet, 1.0, SETTLE)[0] == FLAG_COMPACT
    at = 1.0 + IDLE_REDEFINE + 0.1
    forms = [compressor.compress(9, packet, at, SETTLE)[0] for _ in range(DEFINE_COUNT)]
    assert forms == [FLAG_CONTEXT] * DEFINE_COUNT
    assert compressor.compress(9, packet, at + SETTLE + 0.01, SETTLE)[0] == FLAG_COMPACT
    compressor.reset()
    assert len(compressor) == 0
    flags, payload = compressor.compress(9, packet, 10.0, SETTLE)
    assert flags == FLAG_CONTEXT and payload[0] != first
    for _ in range(DEFINE_COUNT - 1):
        assert compressor.compress(9, packet, 10.0 + SETTLE_MIN / 2, SETTLE_MIN)[0] == FLAG_CONTEXT
    # Past DEFINE_COUNT, still whole until `settle` after the first: that of the path
    # each took, the longest (here SETTLE: the first's).
    assert compressor.compress(9, packet, 10.0 + SETTLE - 0.01, SETTLE_MIN)[0] == FLAG_CONTEXT
    assert compressor.compress(9, packet, 10.0 + SETTLE + 0.01, SETTLE_MIN)[0] == FLAG_COMPACT
    # A context packet on a slow path (settle 0.5 s) during the definition keeps the
    # flow whole for 0.5 s from the definition, no longer (not from each packet).
    other = ipv4(6, tcp(4001, 1, b"x" * 100))
    compressor.compress(9, other, 20.0, SETTLE_MIN)
    compressor.compress(9, other, 20.001, 0.5)
    for _ in range(DEFINE_COUNT):
        assert compressor.compress(9, other, 20.3, 0.5)[0] == FLAG_CONTEXT
    assert compressor.compress(9, other, 20.49, 0.5)[0] == FLAG_CONTEXT
    assert compressor.compress(9, other, 20.51, 0.5)[0] == FLAG_COMPACT


def test_the_egress_keeps_a_bounded_number_of_contexts() -> None:
    decompressor = Decompressor(limit=100)
    for k in range(1000):
        packet = ipv4(17, udp(k, b"x" * 10))
        decompressor.learn(k % 300, bytes((k % 256,)) + packet)
    assert len(decompressor) == 100


# -- between two sessions ----------------------------------------------------------------


PACED = SessionConfig(congestion_control="fixed")
RATES = {0: 4_000_000, 1: 8_000_000}
"""Paths paced at 4 and 8 Mbit/s: a burst of 40 packets waits in their queues."""


def _stamps(tsval: int, tsecr: int) -> bytes:
    """TCP options: NOP, NOP, timestamps."""
    return TIMESTAMPS[:4] + struct.pack("!II", tsval & 0xFFFFFFFF, tsecr & 0xFFFFFFFF)


def _mixed(net: PairNet, side: str, start: float, stop: float, *, burst: int = 40) -> list[bytes]:
    """TCP segments of 1200 bytes and UDP of 160 over IPv4 and IPv6, 12 flows, 8.6 Mbit/s
    in bursts of `burst` packets (1: one every 0.8 ms, each sent at once)."""
    sent = []
    at, k = start, 0
    while at < stop:
        flow = k % 12
        if flow >= 6 and flow < 9:
            packet = udp_packet(flow, k, 160)
        elif flow < 3:
            packet = tcp_packet(flow, k, 1200)
        elif flow < 6:
            data = (b"%d" % k * 400)[:1148]  # (1200 bytes in all)
            body = tcp(4000 + flow, 1200 * k, data, options=_stamps(k, k // 3))
            packet = ipv4(6, body, ident=k)
        else:
            packet = ipv6(6, tcp(5000 + flow, k, b"%d" % k * 50, options=TIMESTAMPS))
        net.schedule(side, at, packet)
        sent.append(packet)
        k += 1
        at = start + (k // burst) * burst * 0.0008
    return sent


def test_sessions_carry_every_packet_compressed_and_rebuild_it_exactly() -> None:
    """Bursts that wait in the paths' queues, over a fast path and a slow one that lose,
    reorder and duplicate, both ways: every
    packet that arrives is delivered byte for byte as sent; nearly all travel compact;
    none is dropped for a missing context (a context goes whole for longer than the slow
    path's round trip, so no compact packet on the fast path overtakes it)."""
    fast = LinkProfile(delay=0.005, jitter=0.001, loss=0.01, duplicate=0.01, reorder=0.02)
    slow = LinkProfile(delay=0.040, jitter=0.004, loss=0.02, reorder=0.03)
    net = PairNet(21, {0: fast, 1: slow}, config=PACED, rates=RATES)
    up = _mixed(net, LOCAL, 0.5, 3.0)
    down = _mixed(net, REMOTE, 0.6, 3.0)
    net.run_until(4.0)
    for side, sent, sender in ((REMOTE, up, LOCAL), (LOCAL, down, REMOTE)):
        delivered = [packet for _, packet in net.delivered[side]]
        assert len(delivered) > 0.95 * len(sent)
        assert set(delivered) <= set(sent)  # byte for byte
        assert len(delivered) == len(set(delivered))
        out = net.session(sender).statistics()
        got = net.session(side).statistics()
        # (A burst's first few packets go at once: the pacer's credit. The remote has no
        # configured rates: its estimates, 10 Mbit/s a path, are above the 8.6 Mbit/s
        # offered, so only some of each burst waits: 11-72 % of its packets go compact,
        # by seed, in runs of seeds 21-28.)
        share = 0.5 if sender == LOCAL else 0.05
        assert out.compacted > share * len(sent), (out.compacted, len(sent))
        assert got.expanded > 0.95 * out.compacted
        assert got.drops["compact_miss"] == 0 and got.drops["bad_compact"] == 0
        assert out.compact_contexts == 12
        # 20 bytes a compact IPv4 TCP packet, 22 UDP, 42 IPv6 TCP (54 packed).
        assert 20 * out.compacted <= out.compact_saved <= 54 * out.compacted
    forms = {data[2] & (PACKED | FLAG_CONTEXT) for _, _, data, _ in net.data_sent(LOCAL)}
    # (0: sent at once, whole; packed: the TCP flows that carry timestamps)
    assert forms == {0, FLAG_COMPACT, FLAG_CONTEXT, PACKED}


def test_only_packets_that_wait_for_a_path_are_compressed() -> None:
    """Compression costs CPU and saves bytes: it is worth it only while the paths' rate is
    the limit. Packets spaced out over paths paced 10 times faster than the traffic, each
    sent at once, travel whole; the same traffic in bursts over paths paced at 4 and 8
    Mbit/s, where they wait in the queues, goes compact."""
    results = {}
    for burst, rates in ((1, {0: 40_000_000, 1: 80_000_000}), (40, RATES)):
        paths = {0: LinkProfile(delay=0.005), 1: LinkProfile(delay=0.02)}
        net = PairNet(23, paths, config=PACED, rates=rates)
        sent = _mixed(net, LOCAL, 0.5, 2.0, burst=burst)
        net.run_until(3.0)
        assert {packet for _, packet in net.delivered[REMOTE]} == set(sent)
        results[burst] = net.local.statistics().compacted / len(sent)
    assert results[1] == 0.0 and results[40] > 0.5, results


def test_nothing_is_compressed_toward_a_peer_that_does_not_take_it() -> None:
    """A remote with `compress_headers = false` does not say it takes compressed headers
    (FEATURES), and sends none itself: every DATA goes whole both ways. A portal older
    than compression says nothing either, and is treated the same."""
    net = PairNet(
        22,
        {0: LinkProfile(delay=0.005), 1: LinkProfile(delay=0.02)},
        remote_config=SessionConfig(compress_headers=False),
    )
    up = _mixed(net, LOCAL, 0.5, 1.5)
    _mixed(net, REMOTE, 0.5, 1.5)
    net.run_until(2.5)
    local, remote = net.local.statistics(), net.session(REMOTE).statistics()
    assert local.compacted == remote.compacted == local.expanded == remote.expanded == 0
    assert local.peer_features is not None and not local.peer_features & FEATURE_COMPACT
    assert remote.peer_features is not None and remote.peer_features & FEATURE_COMPACT
    assert {packet for _, packet in net.delivered[REMOTE]} == set(up)
    for side in (LOCAL, REMOTE):
        assert all(
            not data[2] & (FLAG_COMPACT | FLAG_CONTEXT) for _, _, data, _ in net.data_sent(side)
        )


@pytest.mark.parametrize(
    ("withheld", "form", "never"),
    [(FEATURE_TRIM, FLAG_COMPACT, TRIMMED), (FEATURE_PACK, TRIMMED, PACKED)],
    ids=["trim", "pack"],
)
def test_nothing_is_trimmed_or_packed_toward_a_peer_that_does_not_say_it_takes_it(
    monkeypatch: pytest.MonkeyPatch, withheld: int, form: int, never: int
) -> None:
    """A remote from before *trimmed* DATA says FEATURE_COMPACT without FEATURE_TRIM: the
    local portal still sends compact DATA, never trimmed (nor packed), and every packet
    arrives whole; one from before *packed* says FEATURE_TRIM without FEATURE_PACK: it gets
    trimmed DATA, never packed. The remote, told every feature, trims and packs its own."""
    init = TunnelSession.__init__

    def older_remote(self: TunnelSession, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        if self.role == "remote":
            self._features &= ~withheld  # (what a portal before the flag says)

    monkeypatch.setattr(TunnelSession, "__init__", older_remote)
    net = PairNet(
        24, {0: LinkProfile(delay=0.005), 1: LinkProfile(delay=0.02)}, config=PACED, rates=RATES
    )
    up = _mixed(net, LOCAL, 0.5, 2.0)
    down = _mixed(net, REMOTE, 0.5, 2.0)
    net.run_until(3.0)
    assert {packet for _, packet in net.delivered[REMOTE]} == set(up)
    assert {packet for _, packet in net.delivered[LOCAL]} == set(down)
    local = net.local.statistics()
    assert local.peer_features is not None and not local.peer_features & withheld
    assert local.compacted > 0.5 * len(up)
    sent = {data[2] & (PACKED | FLAG_CONTEXT) for _, _, data, _ in net.data_sent(LOCAL)}
    assert form in sent and never not in sent and PACKED not in sent
    back = {data[2] & (PACKED | FLAG_CONTEXT) for _, _, data, _ in net.data_sent(REMOTE)}
    assert PACKED in back


@settings(max_examples=300, deadline=None)
@given(
    context=st.sampled_from(
        [
            ipv4(6, tcp(1, 2, b"x" * 40)),
            ipv4(6, tcp(1, 2, b"x" * 8, options=TIMESTAMPS), ident=0xFFFF),
            ipv6(6, tcp(1, 2**32 - 1, b"x" * 8, options=TIMESTAMPS)),
            ipv4(6, tcp(1, 2, b"")),
            ipv4(17, udp(1, b"x" * 40)),
            ipv6(6, tcp(1, 2, b"x" * 40)),
            ipv6(17, udp(1, b"x" * 40)),
        ]
    ),
    payload=st.binary(min_size=1, max_size=80),
    learned=st.binary(min_size=1, max_size=80),
    trimmed=st.booleans(),
    packed=st.booleans(),
)
def test_any_payload_is_rebuilt_or_refused_never_raises_otherwise(
    context: bytes, payload: bytes, learned: bytes, trimmed: bool, packed: bool
) -> None:
    """Whatever an authenticated peer sends as *context* or *compact*: a packet, or
    ProtocolError ("bad_compact", "compact_miss"); the rebuilt packet's lengths agree."""
    decompressor = Decompressor()
    decompressor.learn(3, bytes((payload[0],)) + context)
    try:
        decompressor.learn(3, learned)
    except ProtocolError as exc:
        assert exc.reason == "bad_compact"
    try:
        packet = decompressor.expand(3, payload, trimmed, packed)
    except ProtocolError as exc:
        assert exc.reason in ("bad_compact", "compact_miss")
        return
    if packet[0] == 0x45:
        assert int.from_bytes(packet[2:4], "big") == len(packet)
        assert int.from_bytes(packet[:20], "big") % 0xFFFF == 0  # a right checksum
    else:
        assert int.from_bytes(packet[4:6], "big") == len(packet) - 40
