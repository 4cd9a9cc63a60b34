"""TCP segment coalescing for GSO writes (`braid.io.coalesce`).

Every joined write is cut back into segments the way the kernel's GSO does it (payload
in `gso_size` pieces, sequence numbers advanced, checksums completed), and what comes
out must be the packets that went in, in order per flow.
"""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from iotest import tcp_segment as segment

from braid.io.coalesce import (
    GSO_TCPV4,
    GSO_TCPV6,
    MAX_COALESCED_BYTES,
    NEEDS_CSUM,
    PLAIN_HEADER,
    coalesce,
)

ACK, PSH, FIN, SYN = 0x10, 0x08, 0x01, 0x02


def _sum16(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def _pseudo(src: bytes, dst: bytes, length: int) -> bytes:
    if len(src) == 4:
        return src + dst + struct.pack("!BBH", 0, 6, length)
    return src + dst + struct.pack("!IxxxB", length, 6)


def kernel_gso(buffers: list, count: int) -> list[bytes]:
    """What the kernel makes of one write: the packet itself, or its GSO segments."""
    data = b"".join(bytes(b) for b in buffers)
    vnet, packet = data[:10], data[10:]
    if vnet == PLAIN_HEADER:
        assert count == 1
        return [packet]
    flags, gso_type, hdr_len, gso_size, csum_start, csum_offset = struct.unpack("<BBHHHH", vnet)
    assert flags == NEEDS_CSUM and csum_offset == 16
    v4 = gso_type == GSO_TCPV4
    assert gso_type == (GSO_TCPV4 if v4 else GSO_TCPV6)
    ip_len = 20 if v4 else 40
    assert csum_start == ip_len
    if v4:
        assert len(packet) == struct.unpack_from("!H", packet, 2)[0] <= MAX_COALESCED_BYTES
        assert _sum16(packet[:20]) == 0xFFFF  # a valid IP header checksum
        src, dst = packet[12:16], packet[16:20]
    else:
        assert len(packet) == 40 + struct.unpack_from("!H", packet, 4)[0]
        src, dst = packet[8:24], packet[24:40]
    # The checksum field holds the pseudo-header sum of the whole joined segment.
    assert struct.unpack_from("!H", packet, ip_len + 16)[0] == _sum16(
        _pseudo(src, dst, len(packet) - ip_len)
    )
    header, payload = packet[:hdr_len], packet[hdr_len:]
    pieces = [payload[i : i + gso_size] for i in range(0, len(payload), gso_size)]
    assert len(pieces) == count >= 2
    (seq,) = struct.unpack_from("!I", header, ip_len + 4)
    out = []
    for i, piece in enumerate(pieces):
        tcp = bytearray(header[ip_len:] + piece)
        struct.pack_into("!I", tcp, 4, (seq + i * gso_size) & 0xFFFFFFFF)
        if i < len(pieces) - 1:
            tcp[13] &= ~PSH & 0xFF  # (the kernel keeps PSH and FIN for the last segment)
        tcp[16:18] = b"\0\0"
        struct.pack_into("!H", tcp, 16, ~_sum16(_pseudo(src, dst, len(tcp)) + bytes(tcp)) & 0xFFFF)
        if v4:
            ip = bytearray(header[:20])
            struct.pack_into("!H", ip, 2, 20 + len(tcp))
            struct.pack_into("!H", ip, 4, (struct.unpack_from("!H", header, 4)[0] + i) & 0xFFFF)
            ip[10:12] = b"\0\0"
            struct.pack_into("!H", ip, 10, ~_sum16(bytes(ip)) & 0xFFFF)
        else:
            ip = bytearray(header[:40])
            struct.pack_into("!H", ip, 4, len(tcp))
        out.append(bytes(ip) + bytes(tcp))
    return out


def flows_of(packets: list[bytes]) -> dict[bytes, list[bytes]]:
    flows: dict[bytes, list[bytes]] = {}
    for packet in packets:
        key = packet[12:24] if packet[0] == 0x45 else packet[8:44]
        flows.setdefault(key, []).append(packet)
    return flows


def ignoring_ip_id(packet: bytes) -> bytes:
    if packet[0] != 0x45:
        return packet
    return packet[:4] + b"\0\0" + packet[6:10] + b"\0\0" + packet[12:]


def roundtrip(packets: list[bytes]) -> list[bytes]:
    writes = coalesce(packets)
    out = [p for buffers, count in writes for p in kernel_gso(buffers, count)]
    assert sum(count for _, count in writes) == len(packets)
    return out


def test_a_run_of_full_segments_becomes_one_write() -> None:
    packets = [
        segment("10.0.0.1", "10.0.0.2", 5000, 80, 1 + 1000 * i, bytes([i]) * 1000, ip_id=7 + i)
        for i in range(10)
    ]
    writes = coalesce(packets)
    assert len(writes) == 1 and writes[0][1] == 10
    assert roundtrip(packets) == packets  # (IP ids here are consecutive, as the kernel's)


def test_a_psh_or_a_shorter_segment_ends_the_run_and_order_is_kept() -> None:
    def seg(seq: int, size: int, flags: int = ACK) -> bytes:
        return segment("10.0.0.1", "10.0.0.2", 5000, 80, seq, b"s" * size, flags=flags)

    packets = [
        *(seg(1 + 1000 * i, 1000) for i in range(3)),
        seg(3001, 1000, ACK | PSH),  # joins, and ends the run
        seg(4001, 1000),
        seg(5001, 400),  # joins (shorter), and ends the run
        seg(5401, 1000),
    ]
    writes = coalesce(packets)
    assert [count for _, count in writes] == [4, 2, 1]
    assert writes[0][0][1][33] == ACK | PSH  # the joined header has the last one's flags
    assert [ignoring_ip_id(p) for p in roundtrip(packets)] == [ignoring_ip_id(p) for p in packets]


def test_what_cannot_be_joined_is_written_alone_in_order() -> None:
    seg = [segment("10.0.0.1", "10.0.0.2", 5000, 80, 1 + 100 * i, b"x" * 100) for i in range(4)]
    pure_ack = segment("10.0.0.2", "10.0.0.1", 80, 5000, 1000, b"")
    fin = segment("10.0.0.1", "10.0.0.2", 5000, 80, 401, b"y" * 100, flags=ACK | FIN)
    udp = bytes.fromhex("450000200001400040110000") + bytes(8) + bytes(12)  # 32 bytes
    gap = segment("10.0.0.1", "10.0.0.2", 5000, 80, 9999, b"z" * 100)  # not in sequence
    other_ack = segment("10.0.0.1", "10.0.0.2", 5000, 80, 501, b"w" * 100, ack=2000)
    packets = [seg[0], seg[1], pure_ack, seg[2], seg[3], fin, udp, gap, other_ack]
    writes = coalesce(packets)
    assert [count for _, count in writes] == [2, 1, 2, 1, 1, 1, 1]
    assert [ignoring_ip_id(p) for p in roundtrip(packets)] == [ignoring_ip_id(p) for p in packets]


def test_ipv6_segments_are_joined_too() -> None:
    packets = [
        segment(
            "fd00::1", "fd00::2", 443, 5555, (2**32 - 1500 + 1000 * i) % 2**32, bytes([i]) * 1000
        )
        for i in range(5)  # (the sequence number wraps)
    ]
    writes = coalesce(packets)
    assert len(writes) == 1 and writes[0][0][0][1] == GSO_TCPV6
    assert roundtrip(packets) == packets


def test_a_run_stops_below_64_kib() -> None:
    packets = [
        segment("10.0.0.1", "10.0.0.2", 1, 2, 1 + 1400 * i, b"p" * 1400, ip_id=i)
        for i in range(100)
    ]
    writes = coalesce(packets)
    assert [count for _, count in writes] == [46, 46, 8]
    assert roundtrip(packets) == packets


@st.composite
def traffic(draw: st.DrawFn) -> list[bytes]:
    """Segments of up to 3 flows, interleaved, with the odd PSH, short segment, pure ACK,
    option change or sequence gap."""
    flows = draw(st.integers(1, 3))
    seqs = [draw(st.integers(0, 2**32 - 1)) for _ in range(flows)]
    mss = [draw(st.sampled_from([100, 536, 1000, 1348])) for _ in range(flows)]
    packets = []
    for _ in range(draw(st.integers(0, 60))):
        f = draw(st.integers(0, flows - 1))
        src = f"10.0.{f}.1" if f != 2 else "fd00::1"
        dst = "10.9.9.9" if f != 2 else "fd00::9"
        kind = draw(st.sampled_from(["full"] * 8 + ["short", "psh", "ack", "ts", "gap"]))
        size = mss[f] if kind not in ("short", "ack") else (0 if kind == "ack" else 7)
        options = b"\x01\x01\x08\x0a" + draw(st.binary(min_size=8, max_size=8))
        options = options if kind == "ts" else b"\x01\x01\x08\x0a" + bytes(8)
        if kind == "gap":
            seqs[f] = (seqs[f] + 1) & 0xFFFFFFFF
        flags = ACK | PSH if kind == "psh" else ACK
        payload = draw(st.binary(min_size=size, max_size=size))
        packets.append(
            segment(src, dst, 4000 + f, 80, seqs[f], payload, flags=flags, options=options)
        )
        seqs[f] = (seqs[f] + size) & 0xFFFFFFFF
    return packets


@settings(max_examples=300, deadline=None)
@given(traffic())
def test_cut_back_by_gso_every_flow_is_what_went_in(packets: list[bytes]) -> None:
    out = roundtrip(packets)
    before = {k: [ignoring_ip_id(p) for p in v] for k, v in flows_of(packets).items()}
    after = {k: [ignoring_ip_id(p) for p in v] for k, v in flows_of(out).items()}
    assert after == before
