"""TCP MSS clamping at the ingress (`clamp_mss`): a SYN or SYN-ACK entering the tunnel
leaves with an MSS that fits the tunnel, its checksum still right (or still wrong)."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from braid.core.classify import MSS_IPV6_LESS, clamp_mss
from braid.core.session import SessionConfig

from .pairnet import LOCAL, REMOTE, LinkProfile, PairNet

SRC4, DST4 = bytes([10, 1, 0, 2]), bytes([10, 2, 0, 2])
SRC6, DST6 = bytes(15) + b"\x02", bytes(15) + b"\x03"
SYN, ACK = 0x02, 0x10
# Linux's SYN options: MSS, SACK permitted, timestamps, NOP, window scale (MSS at an even
# offset); and one with a NOP first (MSS at an odd offset from the TCP header).
LINUX = b"\x02\x04\x05\xb4" + b"\x04\x02" + b"\x08\x0a" + bytes(8) + b"\x01\x03\x03\x07"
ODD = b"\x01\x02\x04\x05\xb4\x01\x01\x01"


def _sum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def _pseudo(packet: bytes) -> tuple[bytes, bytes]:
    """(pseudo header, TCP segment) of an IPv4 or IPv6 packet."""
    if packet[0] >> 4 == 4:
        start = (packet[0] & 0x0F) * 4
        tcp = packet[start:]
        return packet[12:20] + struct.pack("!BBH", 0, 6, len(tcp)), tcp
    tcp = packet[40:]
    return packet[8:40] + struct.pack("!I3xB", len(tcp), 6), tcp


def _checksum_ok(packet: bytes) -> bool:
    pseudo, tcp = _pseudo(packet)
    return _sum(pseudo + tcp) == 0xFFFF


def _tcp(options: bytes, flags: int = SYN, payload: bytes = b"") -> bytes:
    words = (20 + len(options)) // 4
    return (
        struct.pack("!HHIIBBHHH", 40000, 5201, 1, 0, words << 4, flags, 64240, 0, 0)
        + options
        + payload
    )


def _with_checksum(packet: bytes, start: int) -> bytes:
    pseudo, tcp = _pseudo(packet)
    checksum = ~_sum(pseudo + tcp) & 0xFFFF
    return packet[: start + 16] + checksum.to_bytes(2, "big") + packet[start + 18 :]


def ipv4(tcp: bytes, *, fragment: int = 0) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, fragment, 64, 6, 0, SRC4, DST4)
    return _with_checksum(header + tcp, 20)


def ipv6(tcp: bytes, next_header: int = 6) -> bytes:
    header = struct.pack("!IHBB16s16s", 6 << 28, len(tcp), next_header, 64, SRC6, DST6)
    return _with_checksum(header + tcp, 40)


def _mss(packet: bytes) -> int:
    start = 20 if packet[0] >> 4 == 4 else 40
    at = packet.index(b"\x02\x04", start + 20)
    return int.from_bytes(packet[at + 2 : at + 4], "big")


def test_a_syn_and_a_syn_ack_get_an_mss_that_fits_the_tunnel() -> None:
    for options in (LINUX, ODD):
        for flags in (SYN, SYN | ACK):
            packet = ipv4(_tcp(options, flags))
            assert _checksum_ok(packet) and _mss(packet) == 1460
            clamped = clamp_mss(packet, 1360)
            assert clamped is not None and len(clamped) == len(packet)
            assert _mss(clamped) == 1360 and _checksum_ok(clamped), options
            # Only the MSS and the checksum changed.
            changed = [i for i in range(len(packet)) if packet[i] != clamped[i]]
            assert len(changed) <= 4 and set(changed) <= {36, 37, *range(40, 48)}, changed
            six = ipv6(_tcp(options, flags))
            clamped6 = clamp_mss(six, 1360)
            assert clamped6 is not None
            assert _mss(clamped6) == 1360 - MSS_IPV6_LESS and _checksum_ok(clamped6)


def test_a_corrupt_segment_stays_corrupt() -> None:
    packet = bytearray(ipv4(_tcp(LINUX)))
    packet[37] ^= 0x40  # a bad checksum
    assert not _checksum_ok(bytes(packet))
    clamped = clamp_mss(bytes(packet), 1360)
    assert clamped is not None and _mss(clamped) == 1360 and not _checksum_ok(clamped)


def test_what_needs_no_change_or_does_not_parse_is_left_alone() -> None:
    assert clamp_mss(ipv4(_tcp(LINUX)), 1460) is None  # (already fits)
    assert clamp_mss(ipv4(_tcp(b"\x02\x04\x04\x00")), 1360) is None  # 1024
    assert clamp_mss(ipv4(_tcp(LINUX, ACK, b"data")), 1360) is None  # not a SYN
    assert clamp_mss(ipv4(_tcp(b"\x01\x01\x04\x02")), 1360) is None  # no MSS option
    assert clamp_mss(ipv4(_tcp(b"\x00\x00\x02\x04\x05\xb4\x01\x01")), 1360) is None  # after END
    assert clamp_mss(ipv4(_tcp(LINUX), fragment=0x2000), 1360) is None  # a fragment
    assert clamp_mss(ipv6(_tcp(LINUX), next_header=0), 1360) is None  # an extension header
    assert clamp_mss(ipv4(_tcp(b"\x02\x03\x05\xb4")), 1360) is None  # a bad MSS length
    assert clamp_mss(ipv4(_tcp(b"\x04\x00\x02\x04\x05\xb4\x01\x01")), 1360) is None  # length 0
    syn = ipv4(_tcp(LINUX))
    assert clamp_mss(syn[:50], 1360) is None  # options cut short
    assert clamp_mss(syn[:30], 1360) is None and clamp_mss(b"", 1360) is None
    udp = bytearray(syn)
    udp[9] = 17
    assert clamp_mss(bytes(udp), 1360) is None
    assert clamp_mss(syn, 0) is None


@settings(max_examples=500, deadline=None)
@given(
    data=st.binary(max_size=120),
    first=st.sampled_from([0x45, 0x46, 0x60, 0x4F, 0x00]),
    mss=st.integers(0, 0xFFFF),
)
def test_any_bytes_are_clamped_or_left_alone_without_raising(
    data: bytes, first: int, mss: int
) -> None:
    packet = bytes([first]) + data
    clamped = clamp_mss(packet, mss)
    if clamped is not None:
        assert len(clamped) == len(packet)
        assert sum(a != b for a, b in zip(packet, clamped, strict=True)) <= 4


def test_the_session_clamps_syns_entering_the_tunnel() -> None:
    """Through two sessions: a SYN from the local side and a SYN-ACK from the remote one
    arrive clamped (each portal clamps what enters its side), counted, with a right
    checksum; data segments pass unchanged."""
    net = PairNet(
        3,
        {0: LinkProfile(delay=0.01), 1: LinkProfile(delay=0.03)},
        config=SessionConfig(clamp_mss=1360),
        remote_config=SessionConfig(clamp_mss=1360),
    )
    net.run_until(0.5)
    syn = ipv4(_tcp(LINUX))
    data = ipv4(_tcp(b"", ACK, b"x" * 1000))
    synack = ipv6(_tcp(ODD, SYN | ACK))
    net.schedule(LOCAL, 0.6, syn)
    net.schedule(LOCAL, 0.61, data)
    net.schedule(REMOTE, 0.62, synack)
    net.run_until(1.0)
    at_remote = [p for _, p in net.delivered[REMOTE]]
    at_local = [p for _, p in net.delivered[LOCAL]]
    assert len(at_remote) == 2 and len(at_local) == 1
    assert _mss(at_remote[0]) == 1360 and _checksum_ok(at_remote[0])
    assert at_remote[1] == data
    assert _mss(at_local[0]) == 1340 and _checksum_ok(at_local[0])
    assert net.session(LOCAL).statistics().mss_clamped == 1
    assert net.session(REMOTE).statistics().mss_clamped == 1
    # Off (the core's default): left alone.
    plain = PairNet(3, {0: LinkProfile(delay=0.01)})
    plain.run_until(0.5)
    plain.schedule(LOCAL, 0.6, syn)
    plain.run_until(1.0)
    assert [p for _, p in plain.delivered[REMOTE]] == [syn]
    assert plain.session(LOCAL).statistics().mss_clamped == 0
