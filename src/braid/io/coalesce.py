"""TCP segment coalescing for TUN writes with a virtio-net header (`IFF_VNET_HDR`).

A portal delivers the inner packets of one wake-up together. Consecutive segments of one
TCP flow among them (same addresses, ports, ACK number, options, TOS/TTL, in sequence,
equal sizes but for the last) are joined into one large segment and written to the TUN
device in one system call with a virtio-net header asking for GSO (`gso_type` TCPV4 or
TCPV6, `gso_size` = the segments' payload size) and a partial checksum: the kernel
carries it as one packet to the receiving socket, as its own GRO would have, and cuts it
back into the original segments only if it forwards it out of an interface that cannot
take it. Nothing waits for a later packet: only what one wake-up delivers is joined.

This module is pure (bytes in, buffers out; no I/O). `coalesce()` returns, per write,
the buffers to hand to `os.writev` (the 10-byte virtio-net header first) and the number
of inner packets the write carries.

Joined only: IPv4 without options and unfragmented, or IPv6 with TCP as the next header;
TCP with payload and only ACK (and PSH, which closes the run) set. Anything else (pure
ACKs, SYN/FIN/RST/URG/ECE/CWR, UDP, ICMP, IP options, fragments, malformed packets) is
written alone with a plain header, in order: it first closes every open run, so no
packet of a flow ever overtakes an earlier one.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Final

VNET_HDR_LEN: Final = 10
"""Bytes of the virtio-net header (`struct virtio_net_hdr`) before every packet."""

PLAIN_HEADER: Final = bytes(VNET_HDR_LEN)
"""The header of a packet written as it is: no checksum to complete, no GSO."""

NEEDS_CSUM: Final = 1
GSO_TCPV4: Final = 1
GSO_TCPV6: Final = 4
MAX_COALESCED_BYTES: Final = 65535
"""The largest joined IP packet (the IPv4 total-length field's limit)."""

_TCP: Final = 6
_ACK: Final = 0x10
_PSH: Final = 0x08
_VNET = struct.Struct("<BBHHHH")  # flags, gso_type, hdr_len, gso_size, csum_start, csum_offset
_IP4_WORDS = struct.Struct("!10H")

Write = tuple[list[bytes | bytearray | memoryview], int]
"""The buffers of one `writev` (virtio-net header first) and the inner packets it carries."""

_PENDING: Write = ([], 0)  # the slot of a run still open


_masks: dict[tuple[int, int], tuple[int, int]] = {}


def _header_masks(ip_len: int, header_len: int) -> tuple[int, int]:
    """Bit masks over a segment's headers (as one big-endian integer) of the bytes that
    must equal the run's first segment: everything but the IP ID and header checksum
    (IPv4), the sequence number, the window, the TCP checksum, and PSH; for a shorter
    segment, also but the IP length field."""
    masks = _masks.get((ip_len, header_len))
    if masks is None:
        full = bytearray(b"\xff" * header_len)
        if ip_len == 20:
            full[4:6] = full[10:12] = b"\0\0"  # IP ID, header checksum
        full[ip_len + 4 : ip_len + 8] = bytes(4)  # sequence number
        full[ip_len + 13] = 0xFF & ~_PSH
        full[ip_len + 14 : ip_len + 18] = bytes(4)  # window, checksum
        short = bytearray(full)
        if ip_len == 20:
            short[2:4] = b"\0\0"  # total length
        else:
            short[4:6] = b"\0\0"  # payload length
        masks = _masks[(ip_len, header_len)] = (int.from_bytes(full), int.from_bytes(short))
    return masks


class _Run:
    __slots__ = (
        "first",
        "full_size",
        "header",
        "header_len",
        "ip_len",
        "last",
        "length",
        "mask",
        "mask_short",
        "next_seq",
        "open",
        "parts",
        "seq_shift",
    )

    def __init__(self, first: bytes, ip_len: int, header_len: int) -> None:
        self.first = first
        self.ip_len = ip_len  # 20 (IPv4) or 40 (IPv6)
        self.header_len = header_len  # IP + TCP header
        self.full_size = len(first)
        self.header = int.from_bytes(first[:header_len])
        self.mask, self.mask_short = _header_masks(ip_len, header_len)
        self.seq_shift = (header_len - ip_len - 8) * 8
        payload = len(first) - header_len
        self.next_seq = (int.from_bytes(first[ip_len + 4 : ip_len + 8]) + payload) & 0xFFFFFFFF
        self.length = len(first)
        self.parts: list[bytes | bytearray | memoryview] = [memoryview(first)[header_len:]]
        self.last = first  # the newest segment (its window and flags win)
        self.open = not first[ip_len + 13] & _PSH  # (a PSH or a shorter segment ends a run)

    def join(self, packet: bytes) -> bool:
        """Append `packet` if it continues the run; whether it did."""
        size = len(packet)
        header_len = self.header_len
        if not self.open or size <= header_len or size > self.full_size:
            return False
        payload = size - header_len
        if self.length + payload > MAX_COALESCED_BYTES:
            return False
        header = int.from_bytes(packet[:header_len])
        if size == self.full_size:
            if (header ^ self.header) & self.mask:
                return False
        elif (header ^ self.header) & self.mask_short or (
            (packet[2] << 8 | packet[3]) != size
            if self.ip_len == 20
            else (packet[4] << 8 | packet[5]) + 40 != size
        ):
            return False
        if (header >> self.seq_shift) & 0xFFFFFFFF != self.next_seq:
            return False
        self.parts.append(memoryview(packet)[header_len:])
        self.length += payload
        self.next_seq = (self.next_seq + payload) & 0xFFFFFFFF
        self.last = packet
        if size != self.full_size or packet[self.ip_len + 13] & _PSH:
            self.open = False
        return True


def _segment_info(packet: bytes) -> tuple[bytes, int, int] | None:
    """(flow key, IP header length, IP + TCP header length) of a TCP segment that may
    be joined; None for anything that must be written alone."""
    size = len(packet)
    if size < 40:
        return None
    version = packet[0]
    if version == 0x45:
        if packet[9] != _TCP or (packet[6] & 0x3F) or packet[7]:
            return None  # not TCP, or a fragment (MF or an offset)
        if (packet[2] << 8 | packet[3]) != size:
            return None
        ip_len = 20
        key = packet[12:24]  # addresses and ports
    elif version >> 4 == 6:
        if size < 60 or packet[6] != _TCP or (packet[4] << 8 | packet[5]) + 40 != size:
            return None
        ip_len = 40
        key = packet[8:44]
    else:
        return None
    header_len = ip_len + (packet[ip_len + 12] >> 4) * 4
    flags = packet[ip_len + 13]
    if header_len < ip_len + 20 or header_len >= size or flags & ~(_ACK | _PSH) or not flags & _ACK:
        return None
    return key, ip_len, header_len


def _fold(total: int) -> int:
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def _build(run: _Run) -> Write:
    """The joined segment of a run of two or more: its new headers and the payloads."""
    first = run.first
    ip_len = run.ip_len
    header_len = run.header_len
    total = run.length
    tcp_length = total - ip_len
    header = bytearray(first[:header_len])
    last = run.last
    header[ip_len + 13] = last[ip_len + 13]  # ACK, and PSH if the last had it
    header[ip_len + 14 : ip_len + 16] = last[ip_len + 14 : ip_len + 16]  # the newest window
    if ip_len == 20:
        header[2:4] = total.to_bytes(2)
        header[10:12] = b"\0\0"
        header[10:12] = (~_fold(sum(_IP4_WORDS.unpack_from(header))) & 0xFFFF).to_bytes(2)
        words = struct.unpack_from("!4H", first, 12)
        gso_type = GSO_TCPV4
    else:
        header[4:6] = tcp_length.to_bytes(2)
        words = struct.unpack_from("!16H", first, 8)
        gso_type = GSO_TCPV6
    # The TCP checksum field holds the pseudo-header's sum (not complemented): the
    # kernel adds the segment's own words (VIRTIO_NET_HDR_F_NEEDS_CSUM).
    pseudo = _fold(sum(words) + _TCP + (tcp_length & 0xFFFF) + (tcp_length >> 16))
    header[ip_len + 16 : ip_len + 18] = pseudo.to_bytes(2)
    mss = run.full_size - header_len
    vnet = _VNET.pack(NEEDS_CSUM, gso_type, header_len, mss, ip_len, 16)
    return [vnet, header, *run.parts], len(run.parts)


def coalesce(packets: Sequence[bytes]) -> list[Write]:
    """The writes that carry `packets` (see the module doc), in order per flow."""
    writes: list[Write] = []
    runs: dict[bytes, tuple[int, _Run]] = {}  # flow key -> (its slot in writes, its run)
    current: _Run | None = None  # the run the previous packet went to
    for packet in packets:
        if current is not None and current.join(packet):
            continue  # (the common case: the next segment of the same flow)
        info = _segment_info(packet)
        if info is None:
            for slot, run in runs.values():
                writes[slot] = _close(run)
            runs.clear()
            current = None
            writes.append(([PLAIN_HEADER, packet], 1))
            continue
        key, ip_len, header_len = info
        open_run = runs.get(key)
        if open_run is not None:
            slot, run = open_run
            if run is not current and run.join(packet):
                current = run
                continue
            writes[slot] = _close(run)
        current = _Run(packet, ip_len, header_len)
        runs[key] = (len(writes), current)
        writes.append(_PENDING)
    for slot, run in runs.values():
        writes[slot] = _close(run)
    return writes


def _close(run: _Run) -> Write:
    if len(run.parts) == 1:
        return [PLAIN_HEADER, run.first], 1
    return _build(run)
