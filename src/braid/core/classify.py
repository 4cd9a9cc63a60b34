# Flow classification: an inner IP packet's 5-tuple hashed into a 16-bit flow bucket.
#
# Invariants:
# - `flow_bucket` is a pure function of the packet bytes, the same in every process and on
#   every host (zlib.crc32, never Python's salted hash()).
# - Packets of one transport flow (protocol, addresses, ports) share a bucket. Fragments and
#   protocols without ports hash on protocol and addresses only, so all fragments of one
#   datagram share a bucket.
# - Any input, however short or malformed, yields a bucket in [0, 65535]; never an exception.
# - Traffic classes: `match_class` returns the index of the first class whose every given
#   criterion (DSCP, protocol, port of either end, maximum size) matches, or None; it never
#   raises either (a packet too short for a criterion does not match it).
# - `is_tcp_data` tells TCP segments that carry data (or SYN/FIN/RST) from pure
#   acknowledgements and other protocols; `tcp_data_seq` also reads such a segment's
#   sequence number; neither ever raises.

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final
from zlib import crc32

# Protocols whose header starts with 16-bit source and destination ports.
_PORT_PROTOCOLS: Final = frozenset((6, 17, 33, 132, 136))  # TCP, UDP, DCCP, SCTP, UDPLite
# IPv6 extension headers walked to reach the transport header.
_IPV6_HOP_BY_HOP: Final = 0
_IPV6_ROUTING: Final = 43
_IPV6_FRAGMENT: Final = 44
_IPV6_AH: Final = 51
_IPV6_DEST_OPTS: Final = 60
_IPV6_MAX_EXTENSIONS: Final = 8
_SEQ_AT: Final = struct.Struct("!I").unpack_from
_PORT_START: Final = {proto: crc32(bytes((proto,))) for proto in _PORT_PROTOCOLS}


def flow_bucket(packet: bytes) -> int:
    """The 16-bit flow bucket of an IPv4 or IPv6 packet (0 for anything else)."""
    size = len(packet)
    if size < 20:
        return 0
    if packet[0] == 0x45 and size >= 24 and not (packet[6] & 0x3F or packet[7]):
        # The common case (IPv4 without options, not a fragment), with the same result
        # as below: crc32 continued from the protocol byte's over addresses and ports.
        start = _PORT_START.get(packet[9])
        if start is not None:
            value = crc32(packet[12:24], start)
            return (value ^ (value >> 16)) & 0xFFFF
    version = packet[0] >> 4
    if version == 4:
        header_len = (packet[0] & 0x0F) * 4
        protocol = packet[9]
        key = packet[9:10] + packet[12:20]
        # More-fragments flag or a fragment offset: no ports in this packet.
        fragment = ((packet[6] & 0x3F) << 8) | packet[7]
        if (
            protocol in _PORT_PROTOCOLS
            and not fragment
            and header_len >= 20
            and size >= header_len + 4
        ):
            key += packet[header_len : header_len + 4]
    elif version == 6:
        if size < 40:
            return 0
        protocol = packet[6]
        offset = 40
        fragmented = False
        for _ in range(_IPV6_MAX_EXTENSIONS):
            if protocol in (_IPV6_HOP_BY_HOP, _IPV6_ROUTING, _IPV6_DEST_OPTS):
                if size < offset + 8:
                    break
                protocol, length = packet[offset], (packet[offset + 1] + 1) * 8
            elif protocol == _IPV6_FRAGMENT:
                if size < offset + 8:
                    break
                fragmented = fragmented or bool(
                    ((packet[offset + 2] << 8) | packet[offset + 3]) & 0xFFF9
                )
                protocol, length = packet[offset], 8
            elif protocol == _IPV6_AH:
                if size < offset + 8:
                    break
                protocol, length = packet[offset], (packet[offset + 1] + 2) * 4
            else:
                break
            offset += length
        key = bytes((protocol,)) + packet[8:40]
        if protocol in _PORT_PROTOCOLS and not fragmented and size >= offset + 4:
            key += packet[offset : offset + 4]
    else:
        return 0
    value = crc32(key)
    return (value ^ (value >> 16)) & 0xFFFF


@dataclass(frozen=True, slots=True)
class TrafficClass:
    """A traffic class: packets matching every given criterion (None: any) belong to it."""

    name: str
    dscp: frozenset[int] | None = None
    proto: frozenset[int] | None = None
    ports: frozenset[int] | None = None
    """Matches when the source or the destination port is in the set."""
    max_size: int | None = None
    priority: int = 0
    """Higher is more urgent; > 0 is real time (never refused by queue control)."""
    scheduler: str | None = None
    """The class's scheduler (None: the session's)."""
    nack: bool | None = None
    """issue 7: False keeps the class's packets out of the retransmit buffer (None: the
    session's `nack` setting)."""
    fec: bool | None = None
    """issue 7: True protects the class's packets with FEC parity (sized like fec = "on"
    when the session's fec is "off"), False never (None: the session's `fec`)."""
    equalize: str | None = None
    """issue 5: "ack" or "off" in place of the session's `equalize` for the class's TCP
    connections (None: the session's)."""

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("name: a traffic class needs a name")
        if self.dscp is not None and any(not 0 <= d <= 63 for d in self.dscp):
            raise ValueError("dscp: values must be 0..63")
        if self.proto is not None and any(not 0 <= p <= 255 for p in self.proto):
            raise ValueError("proto: values must be 0..255")
        if self.ports is not None and any(not 0 <= p <= 65535 for p in self.ports):
            raise ValueError("ports: values must be 0..65535")
        if self.max_size is not None and self.max_size < 1:
            raise ValueError("max_size: must be a positive number of bytes")
        if self.equalize not in (None, "ack", "off"):
            raise ValueError('equalize: a class takes "ack" or "off"')


def packet_fields(packet: bytes) -> tuple[int, int, int, int]:
    """(dscp, protocol, source port, destination port) of an IP packet; -1 if unknown."""
    size = len(packet)
    if size < 20:
        return -1, -1, -1, -1
    version = packet[0] >> 4
    if version == 4:
        dscp = packet[1] >> 2
        protocol = packet[9]
        offset = (packet[0] & 0x0F) * 4
        if ((packet[6] & 0x1F) << 8) | packet[7]:
            offset = size  # a non-first fragment: no ports
    elif version == 6:
        if size < 40:
            return -1, -1, -1, -1
        dscp = ((packet[0] & 0x0F) << 2) | (packet[1] >> 6)
        protocol = packet[6]
        offset = 40  # extension headers are not walked for classes
    else:
        return -1, -1, -1, -1
    if protocol in _PORT_PROTOCOLS and size >= offset + 4:
        return (
            dscp,
            protocol,
            (packet[offset] << 8) | packet[offset + 1],
            (packet[offset + 2] << 8) | packet[offset + 3],
        )
    return dscp, protocol, -1, -1


SMALL_DATAGRAM: Final = 300
"""Non-TCP packets up to this size (IP header included) are taken as real-time: a call's
audio, a game's updates."""
_DSCP_EF: Final = 46


def waits_for_resends(packet: bytes) -> bool:
    """Whether the egress should hold this packet's flow for a NACKed resend (a patient
    reorder bucket): TCP, and other packets over SMALL_DATAGRAM bytes (QUIC, a call's
    video, a tunnel inside the tunnel), which reorder or stall without the missing one.
    Not ICMP, DSCP EF (expedited forwarding) or a small datagram: those packets each stand
    alone, and the next one should not wait a round trip for a resend."""
    size = len(packet)
    if size < 20:
        return False
    version = packet[0] >> 4
    if version == 4:
        protocol = packet[9]
        dscp = packet[1] >> 2
    elif version == 6 and size >= 40:
        protocol = packet[6]
        dscp = ((packet[0] & 0x0F) << 2) | (packet[1] >> 6)
    else:
        return False
    if dscp == _DSCP_EF or protocol in (1, 58):  # ICMP, ICMPv6
        return False
    return protocol == 6 or size > SMALL_DATAGRAM


def is_tcp_data(packet: bytes) -> bool:
    """Whether an IPv4/IPv6 packet is a TCP segment with data or SYN/FIN/RST, or a later
    fragment of one: not a pure acknowledgement, and not another protocol (IPv6: without
    extension headers). A header cut short counts as data. Egress delay equalization holds
    these (`equalize = "tcp"`)."""
    return tcp_data_seq(packet) >= 0


def tcp_data_seq(packet: bytes) -> int:
    """The sequence number of a TCP segment `is_tcp_data` counts as data (0 for a later
    fragment or a header cut short), or -1 for anything else."""
    size = len(packet)
    if size >= 40 and packet[0] == 0x45 and not (packet[6] & 0x1F or packet[7]):
        # (the common case: IPv4 without options, not a fragment; the same result)
        if packet[9] != 6:
            return -1
        if size > 20 + ((packet[32] >> 4) << 2) or packet[33] & 0x07:
            seq: int = _SEQ_AT(packet, 24)[0]
            return seq
        return -1
    version = packet[0] >> 4 if size else 0
    if version == 4:
        if size < 20 or packet[9] != 6:
            return -1
        if packet[6] & 0x1F or packet[7]:
            return 0  # a later fragment: data
        start = (packet[0] & 0x0F) << 2
    elif version == 6:
        if size < 40 or packet[6] != 6:
            return -1
        start = 40
    else:
        return -1
    if size < start + 14:
        return 0
    if size > start + ((packet[start + 12] >> 4) << 2) or packet[start + 13] & 0x07:
        return int.from_bytes(packet[start + 4 : start + 8])
    return -1


def match_class(packet: bytes, classes: tuple[TrafficClass, ...]) -> int | None:
    """The index of the first class `packet` belongs to, or None."""
    dscp, protocol, sport, dport = packet_fields(packet)
    size = len(packet)
    for index, cls in enumerate(classes):
        if cls.max_size is not None and size > cls.max_size:
            continue
        if cls.dscp is not None and dscp not in cls.dscp:
            continue
        if cls.proto is not None and protocol not in cls.proto:
            continue
        if cls.ports is not None and sport not in cls.ports and dport not in cls.ports:
            continue
        return index
    return None


def ecn_marked(packet: bytes) -> bytes | None:
    """`packet` with its ECN field set to CE (RFC 3168), or None when it is not
    ECN-capable (Not-ECT, or not an IPv4/IPv6 packet). A packet already marked CE comes
    back as it is. The IPv4 header checksum is updated incrementally (RFC 1624)."""
    if len(packet) < 2:
        return None
    version = packet[0] >> 4
    if version == 4 and len(packet) >= 20:
        tos = packet[1]
        ecn = tos & 0x03
        if ecn == 0:
            return None
        if ecn == 0x03:
            return packet
        old = (packet[0] << 8) | tos
        new = old | 0x03
        checksum = _checksum_after((packet[10] << 8) | packet[11], old, new)
        return (
            packet[:1]
            + bytes((new & 0xFF,))
            + packet[2:10]
            + checksum.to_bytes(2, "big")
            + packet[12:]
        )
    if version == 6 and len(packet) >= 40:
        ecn = (packet[1] >> 4) & 0x03
        if ecn == 0:
            return None
        if ecn == 0x03:
            return packet
        return packet[:1] + bytes((packet[1] | 0x30,)) + packet[2:]
    return None


MSS_IPV6_LESS: Final = 20
"""An IPv6 header is this much longer than an IPv4 one: the MSS that fits the same MTU is
this much smaller."""
_IPV4_TCP_HEADERS: Final = 40


def mss_for_mtu(mtu: int) -> int:
    """The largest TCP MSS whose IPv4 segments fit an MTU (for `clamp_mss`)."""
    return mtu - _IPV4_TCP_HEADERS


_TCP_SYN: Final = 0x02
_TCP_OPT_END: Final = 0
_TCP_OPT_NOP: Final = 1
_TCP_OPT_MSS: Final = 2


def clamp_mss(packet: bytes, mss: int) -> bytes | None:
    """`packet` with its TCP MSS option lowered to `mss` (IPv4; `mss` - 20 for IPv6), or
    None when it needs no change: not a TCP SYN (or SYN-ACK), no MSS option, an MSS
    already no larger, or a packet that does not parse (IPv4 with a fragment offset or
    more fragments; IPv6 with extension headers; options cut short). The TCP checksum is
    updated incrementally (RFC 1624), so a segment that arrived corrupt stays so."""
    size = len(packet)
    if size < 20 or mss <= 0:
        return None
    version = packet[0] >> 4
    if version == 4:
        start = (packet[0] & 0x0F) * 4
        if start < 20 or packet[9] != 6 or packet[6] & 0x3F or packet[7]:
            return None
    elif version == 6:
        start = 40
        if size < 40 or packet[6] != 6:
            return None
        mss -= MSS_IPV6_LESS
        if mss <= 0:
            return None  # (an MSS of 20 or less leaves nothing to clamp an IPv6 SYN to)
    else:
        return None
    if size < start + 20 or not packet[start + 13] & _TCP_SYN:
        return None
    end = start + (packet[start + 12] >> 4) * 4
    if end > size:
        return None
    at = start + 20
    while at < end:
        kind = packet[at]
        if kind == _TCP_OPT_END:
            return None
        if kind == _TCP_OPT_NOP:
            at += 1
            continue
        if at + 1 >= end or packet[at + 1] < 2:
            return None
        length = packet[at + 1]
        if kind == _TCP_OPT_MSS:
            if length != 4 or at + 4 > end:
                return None
            old = (packet[at + 2] << 8) | packet[at + 3]
            if old <= mss:
                return None
            return _with_mss(packet, start, at + 2, old, mss)
        at += length
    return None


def _checksum_after(checksum: int, old: int, new: int) -> int:
    """An Internet checksum after one 16-bit word it covers went from `old` to `new`:
    HC' = ~(~HC + ~m + m') (RFC 1624, eqn. 3)."""
    total = (~checksum & 0xFFFF) + (~old & 0xFFFF) + new
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _with_mss(packet: bytes, start: int, where: int, old: int, new: int) -> bytes:
    """`packet` with the 16 bits at `where` changed from `old` to `new` and the TCP
    checksum (at `start` + 16) adjusted. At an odd offset from the TCP header the two
    bytes straddle two checksum words, which sums them byte-swapped."""
    if (where - start) & 1:
        old = ((old & 0xFF) << 8) | (old >> 8)
        sum_new = ((new & 0xFF) << 8) | (new >> 8)
    else:
        sum_new = new
    at = start + 16
    checksum = _checksum_after((packet[at] << 8) | packet[at + 1], old, sum_new)
    out = bytearray(packet)
    out[at : at + 2] = checksum.to_bytes(2, "big")
    out[where : where + 2] = new.to_bytes(2, "big")
    return bytes(out)
