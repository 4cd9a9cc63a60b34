# Flow classification: an inner IP packet's 5-tuple hashed into a 16-bit flow bucket.
#
# Invariants:
# - `flow_bucket` is a pure function of the packet bytes, the same in every process and on
#   every host (zlib.crc32, never Python's salted hash()).
# - Packets of one transport flow (protocol, addresses, ports) share a bucket. Fragments and
#   protocols without ports hash on protocol and addresses only, so all fragments of one
#   datagram share a bucket.
# - Any input, however short or malformed, yields a bucket in [0, 65535]; never an exception.

from __future__ import annotations

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


def flow_bucket(packet: bytes) -> int:
    """The 16-bit flow bucket of an IPv4 or IPv6 packet (0 for anything else)."""
    size = len(packet)
    if size < 20:
        return 0
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
