"""TCP acknowledgement filtering at the ingress (`ack_filter`).

A download over links with a narrow upload (ADSL's 16/1 Mbit/s, a cell's or a
satellite's 10:1) sends its acknowledgements up through the tunnel, one for every two
segments. Each travels in its own datagram with the tunnel's framing, so the upload fills
with them before the download is full, and a queue of acknowledgements waiting in the
tunnel then holds the download back (2 x 20 Mbit/s down / 0.5 up: 21 of 38 Mbit/s
without filtering).

A pure acknowledgement is cumulative: a later one of the same connection that
acknowledges more, and carries everything else the earlier one said, makes the earlier
one useless. So while a flow's newest queued packet is a pure acknowledgement still
waiting for its path, a newer one takes its place in the queue (its sequence numbers,
its time, its spot) instead of queueing behind it: the queue holds one acknowledgement
per flow, and the sender hears the newest at the time the oldest would have left. With
no queue nothing is ever replaced (the acknowledgement has left before the next comes).

`supersedes` is conservative, in the spirit of CAKE's ack filter: both packets are pure
acknowledgements of the same connection (addresses, ports, TOS / traffic class), the
newer acknowledges strictly more, carries no flag but ACK, its timestamps are not older,
and every SACK block of the older is acknowledged or covered by the newer's; any other
TCP option (MPTCP, TCP-AO, ...) or anything unexpected keeps both. Duplicate
acknowledgements (the same number) are never merged: a sender counts them.

Sans-I/O and pure: functions of the packet bytes that never raise.
"""

from __future__ import annotations

import struct
from typing import Final

_U32: Final = struct.Struct("!I").unpack_from
_HALF32: Final = 1 << 31
_MASK32: Final = (1 << 32) - 1
_ACK: Final = 0x10
_OPT_END: Final = 0
_OPT_NOP: Final = 1
_OPT_SACK: Final = 5
_OPT_TIMESTAMP: Final = 8


def is_pure_ack(packet: bytes) -> bool:
    """Whether `packet` is an IPv4 (without options, not a fragment) or IPv6 (TCP next)
    TCP segment with no data whose only flag is ACK."""
    size = len(packet)
    lead = packet[0] if size else 0
    if lead == 0x45:
        return (
            size >= 40
            and packet[9] == 6
            and not (packet[6] & 0x3F or packet[7])
            and packet[33] == _ACK
            and not packet[32] & 0x0F
            and size == 20 + ((packet[32] >> 4) << 2)
        )
    if lead >> 4 == 6:
        return (
            size >= 60
            and packet[6] == 6
            and packet[53] == _ACK
            and not packet[52] & 0x0F
            and size == 40 + ((packet[52] >> 4) << 2)
        )
    return False


def _later(a: int, b: int) -> bool:
    """Whether 32-bit sequence value `a` is after `b` (or equal: `_later(a, a)`)."""
    return (a - b) & _MASK32 < _HALF32


def _options(
    packet: bytes, start: int
) -> tuple[tuple[int, int] | None, list[tuple[int, int]]] | None:
    """The timestamps (or None) and SACK blocks of the TCP header at `start`, or None when
    it has any other option or a malformed one."""
    end = start + ((packet[start + 12] >> 4) << 2)
    at = start + 20
    timestamps = None
    blocks: list[tuple[int, int]] = []
    while at < end:
        kind = packet[at]
        if kind == _OPT_END:
            break
        if kind == _OPT_NOP:
            at += 1
            continue
        if at + 1 >= end:
            return None
        length = packet[at + 1]
        if length < 2 or at + length > end:
            return None
        if kind == _OPT_TIMESTAMP and length == 10:
            timestamps = (_U32(packet, at + 2)[0], _U32(packet, at + 6)[0])
        elif kind == _OPT_SACK and length >= 10 and (length - 2) % 8 == 0:
            blocks.extend(
                (_U32(packet, b)[0], _U32(packet, b + 4)[0]) for b in range(at + 2, at + length, 8)
            )
        else:
            return None
        at += length
    return timestamps, blocks


def supersedes(new: bytes, old: bytes) -> bool:
    """Whether pure acknowledgement `new` says everything `old` says and more (see the
    module's rules), so that `old` may be left out. Both must satisfy `is_pure_ack`."""
    if not (is_pure_ack(new) and is_pure_ack(old)) or new[0] != old[0]:
        return False
    if new[0] == 0x45:
        if new[1] != old[1] or new[12:24] != old[12:24]:
            return False
        start = 20
    else:
        if new[:4] != old[:4] or new[8:44] != old[8:44]:
            return False
        start = 40
    new_ack = _U32(new, start + 8)[0]
    old_ack = _U32(old, start + 8)[0]
    if new_ack == old_ack or not _later(new_ack, old_ack):
        return False
    new_options = _options(new, start)
    old_options = _options(old, start)
    if new_options is None or old_options is None:
        return False
    new_ts, new_blocks = new_options
    old_ts, old_blocks = old_options
    if (new_ts is None) != (old_ts is None):
        return False
    if (
        new_ts is not None
        and old_ts is not None
        and not (_later(new_ts[0], old_ts[0]) and _later(new_ts[1], old_ts[1]))
    ):
        return False
    for left, right in old_blocks:
        if _later(new_ack, right):
            continue  # acknowledged now
        if not any(
            _later(left, new_left) and _later(new_right, right)
            for new_left, new_right in new_blocks
        ):
            return False
    return True
