# The braid v1 wire codec (docs/protocol.md): frame types, encoders, one decoder.
#
# Invariants:
# - `decode_datagram` returns exactly one frame or raises `ProtocolError` whose `reason` is
#   one of `DROP_REASONS`; no other exception escapes it, whatever the input.
# - Every `encode_*` output decodes back to an equal frame (round trip); encoders trust
#   their caller (values in range), decoders trust nothing.
# - All integers are unsigned big-endian; 32-bit counters are carried modulo 2**32 and
#   unwrapped by the receiver with `unwrap32`. Reserved fields are sent as zero and ignored.
# - UDP keeps datagram boundaries, so DATA and PROBE carry no body length: a DATA payload
#   or PROBE padding is "the rest of the datagram". FEEDBACK and CONTROL have exact sizes.
# - The DATA send path is one precompiled `struct` pack plus one concatenation; no frame
#   object is built to send DATA.

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

VERSION: Final = 1

HEADER = struct.Struct("!BBBBIII")
"""Common header: version, type, flags, path_id, session_id, path_seq, tx_time_us."""
DATA_HEADER = struct.Struct("!BBBBIIIIHI")
"""Common header followed by session_seq, bucket, bucket_seq."""
FEEDBACK_ENTRY = struct.Struct("!BHIIII")
"""path_id, reserved, highest_seq, received, echo_tx_time_us, echo_hold_us."""

HEADER_SIZE: Final = HEADER.size  # 16
DATA_HEADER_SIZE: Final = DATA_HEADER.size  # 26
FEEDBACK_ENTRY_SIZE: Final = FEEDBACK_ENTRY.size  # 19
MAX_FEEDBACK_ENTRIES: Final = 16
MAX_PROBE_PADDING: Final = 8984
"""A PROBE may be as large as a 9000-byte jumbo frame's UDP payload (path MTU probes)."""
MAX_PATH_ID: Final = 254
FLAG_REPLY: Final = 0x01
FLAG_JUMPED: Final = 0x02
"""DATA: sent ahead of DATA queued before it on its path (a priority packet); its session
sequence number says nothing about what the path delivered before it."""
FLAG_RESENT: Final = 0x04
"""DATA: a retransmission answering a NACK (its numbers are the original's; like a jumped
packet it proves nothing about what its path delivered before it)."""
FLAG_HOLD: Final = 0x08
"""DATA: deliver no earlier than it would have arrived over the slowest usable path (the
sender's ingress marks a bulk TCP flow caught in BBR's PROBE_RTT: `equalize = "bulk"`)."""
FLAG_COMPACT: Final = 0x10
"""DATA: the payload is a compressed inner packet: a context id, the header fields that
change, the rest of the packet (`compress_headers`; braid.core.compact)."""
FLAG_CONTEXT: Final = 0x20
"""DATA: the payload is a context id and a whole inner packet, whose static header fields
the egress keeps under that id for later *compact* DATA of the same bucket."""
FLAG_TRIMMED: Final = 0x40
"""DATA, with FLAG_COMPACT only: the compact TCP packet also leaves out its urgent pointer
(zero) and its timestamp option's first 4 bytes (01 01 08 0a) (braid.core.compact)."""
FLAG_PACKED: Final = 0x80
"""DATA, with FLAG_COMPACT and FLAG_TRIMMED only: the trimmed TCP packet also carries its
sequence and acknowledgement numbers in 3 bytes and its timestamps in 2: their low bits
(braid.core.compact)."""
FLAG_GONE: Final = 0x01
"""NACK: the sender no longer has these packets (stop waiting for them)."""
MAX_NACK_ENTRIES: Final = 64
MAX_FEC_GROUP: Final = 32
FRAG_HEADER = struct.Struct("!BBBBIIIIHIBB")
"""Common header, session_seq, bucket, bucket_seq, index, count."""
FRAG_HEADER_SIZE: Final = FRAG_HEADER.size  # 28
MAX_FRAGMENTS: Final = 64
MASK32: Final = 0xFFFFFFFF

_HALF32: Final = 1 << 31
_DATA_PREFIX: Final = bytes((VERSION, 1, 0))

DROP_REASONS: Final = (
    "truncated",
    "bad_version",
    "bad_type",
    "bad_flags",
    "bad_length",
    "empty_payload",
    "bad_control",
    "unknown_session",
    "unknown_path",
    "duplicate",
    "compact_miss",
    "bad_compact",
)
"""Every reason a received datagram can be dropped for (docs/protocol.md)."""


class FrameType(IntEnum):
    """Values of the header's type byte."""

    DATA = 1
    FEEDBACK = 2
    PROBE = 3
    CONTROL = 4
    NACK = 8
    FEC = 9
    FRAG = 10


class ControlKind(IntEnum):
    """Values of a CONTROL frame's kind byte."""

    HELLO = 1
    CLOSE = 2
    PATH_DOWN = 3
    PATH_INFO = 4
    FEATURES = 5


PATH_INFO_VALUE = struct.Struct("!HBBI")
"""PATH_INFO value: metric, flags (bit 0 standby), reserved (0), rate in kbit/s (0: none)."""
PATH_INFO_STANDBY: Final = 0x01
MAX_INFO_METRIC: Final = 0xFFFF

FEATURES_VALUE = struct.Struct("!I")
"""FEATURES value: a bit mask of what the sending portal does; unknown bits are ignored."""
FEATURE_HOLD: Final = 0x01
"""FEATURES bit 0: the sender's egress holds DATA flagged *hold* (`equalize = "bulk"`)."""
FEATURE_COMPACT: Final = 0x02
"""FEATURES bit 1: the sender's egress takes *context* and *compact* DATA
(`compress_headers`)."""
FEATURE_TRIM: Final = 0x04
"""FEATURES bit 2: the sender's egress also takes *compact* DATA flagged *trimmed*."""
FEATURE_PACK: Final = 0x08
"""FEATURES bit 3: the sender's egress also takes *trimmed* DATA flagged *packed*."""
FEATURE_FILL: Final = 0x10
"""FEATURES bit 4: the sender answers a *fill* PROBE (padding, no reply flag) with
FEEDBACK as it does DATA, so such PROBEs can find a path's rate (and it takes part: a
portal with `probe_rates` off does not say it, and gets none)."""


@dataclass(frozen=True, slots=True)
class PathInfo:
    """What the local portal tells the remote about one of its links (CONTROL PATH_INFO):
    the link's metric, whether it is a standby link, and the rate the remote may send at
    over it (the link's download rate, bit/s; None: unknown)."""

    metric: int = 0
    standby: bool = False
    rate_bps: int | None = None


def encode_path_info(info: PathInfo) -> bytes:
    """The PATH_INFO value for `info` (metric clamped to 65535; rate rounded to kbit/s)."""
    rate = 0
    if info.rate_bps:
        rate = max(1, min(round(info.rate_bps / 1000), 0xFFFFFFFF))
    flags = PATH_INFO_STANDBY if info.standby else 0
    return PATH_INFO_VALUE.pack(min(max(info.metric, 0), MAX_INFO_METRIC), flags, 0, rate)


def decode_path_info(value: bytes) -> PathInfo:
    """The `PathInfo` in a PATH_INFO value (already checked by `decode_datagram`)."""
    metric, flags, _, rate = PATH_INFO_VALUE.unpack(value)
    return PathInfo(metric, bool(flags & PATH_INFO_STANDBY), rate * 1000 if rate else None)


class ProtocolError(Exception):
    """A datagram that does not decode; `reason` is one of `DROP_REASONS`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class DataFrame:
    """DATA: one whole inner IP packet."""

    path_id: int
    session_id: int
    path_seq: int
    tx_time_us: int
    session_seq: int
    bucket: int
    bucket_seq: int
    payload: bytes
    jumped: bool = False
    """FLAG_JUMPED was set."""
    resent: bool = False
    """FLAG_RESENT was set."""
    hold: bool = False
    """FLAG_HOLD was set."""
    compact: bool = False
    """FLAG_COMPACT was set: `payload` is a compressed packet."""
    context: bool = False
    """FLAG_CONTEXT was set: `payload` is a context id and a whole packet."""
    trimmed: bool = False
    """FLAG_TRIMMED was set (with FLAG_COMPACT): see FLAG_TRIMMED."""
    packed: bool = False
    """FLAG_PACKED was set (with FLAG_COMPACT and FLAG_TRIMMED): see FLAG_PACKED."""


@dataclass(frozen=True, slots=True)
class FeedbackEntry:
    """One FEEDBACK entry: what the receiver got on one path."""

    path_id: int
    highest_seq: int
    received: int
    echo_tx_time_us: int
    echo_hold_us: int


@dataclass(frozen=True, slots=True)
class FeedbackFrame:
    """FEEDBACK: 1 to 16 entries."""

    path_id: int
    session_id: int
    path_seq: int
    tx_time_us: int
    entries: tuple[FeedbackEntry, ...]


@dataclass(frozen=True, slots=True)
class ProbeFrame:
    """PROBE: keepalive / RTT probe with `padding` bytes of ignored body."""

    path_id: int
    session_id: int
    path_seq: int
    tx_time_us: int
    reply_requested: bool
    padding: int = 0


@dataclass(frozen=True, slots=True)
class ControlFrame:
    """CONTROL: HELLO, CLOSE, PATH_DOWN or PATH_INFO (`value` is the kind's value bytes)."""

    path_id: int
    session_id: int
    path_seq: int
    tx_time_us: int
    kind: ControlKind
    value: bytes = b""


@dataclass(frozen=True, slots=True)
class NackFrame:
    """NACK: session sequence numbers (low 32 bits) the egress misses, or, with `gone`, the
    sender's answer that it cannot resend them."""

    path_id: int
    session_id: int
    path_seq: int
    tx_time_us: int
    seqs: tuple[int, ...]
    gone: bool = False


@dataclass(frozen=True, slots=True)
class FecFrame:
    """FEC: the XOR of the symbols (bucket, bucket_seq, packet) of the DATA numbered
    `seqs` (low 32 bits), and of their lengths."""

    path_id: int
    session_id: int
    path_seq: int
    tx_time_us: int
    seqs: tuple[int, ...]
    length_xor: int
    data: bytes


@dataclass(frozen=True, slots=True)
class FragFrame:
    """FRAG: piece `index` of `count` of an inner packet too large for its path (DATA's
    numbers and flags; the egress rebuilds the packet, then treats it as that DATA)."""

    path_id: int
    session_id: int
    path_seq: int
    tx_time_us: int
    session_seq: int
    bucket: int
    bucket_seq: int
    index: int
    count: int
    data: bytes
    jumped: bool = False
    resent: bool = False


Frame = DataFrame | FeedbackFrame | ProbeFrame | ControlFrame | NackFrame | FecFrame | FragFrame
Buffer = bytes | bytearray | memoryview
"""What the decoders accept (a received datagram)."""


def unwrap32(value: int, ref: int) -> int:
    """Unwrap the 32-bit counter `value` to the integer nearest the unwrapped `ref`."""
    return ref + ((value - ref + _HALF32) & MASK32) - _HALF32


def time_us(now: float) -> int:
    """A monotonic time in seconds as the 32-bit microsecond wire timestamp."""
    return int(now * 1_000_000) & MASK32


# -- encoders -------------------------------------------------------------------------------


def encode_data(
    path_id: int,
    session_id: int,
    path_seq: int,
    tx_time_us: int,
    session_seq: int,
    bucket: int,
    bucket_seq: int,
    payload: bytes,
    *,
    jumped: bool = False,
    resent: bool = False,
    hold: bool = False,
    compact: bool = False,
    context: bool = False,
    trimmed: bool = False,
    packed: bool = False,
) -> bytes:
    """Encode a DATA datagram (payload must be non-empty)."""
    return (
        DATA_HEADER.pack(
            VERSION,
            FrameType.DATA,
            (FLAG_JUMPED if jumped else 0)
            | (FLAG_RESENT if resent else 0)
            | (FLAG_HOLD if hold else 0)
            | (FLAG_COMPACT if compact else 0)
            | (FLAG_CONTEXT if context else 0)
            | (FLAG_TRIMMED if trimmed else 0)
            | (FLAG_PACKED if packed else 0),
            path_id,
            session_id,
            path_seq,
            tx_time_us,
            session_seq,
            bucket,
            bucket_seq,
        )
        + payload
    )


def encode_feedback(
    path_id: int,
    session_id: int,
    path_seq: int,
    tx_time_us: int,
    entries: tuple[FeedbackEntry, ...] | list[FeedbackEntry],
) -> bytes:
    """Encode a FEEDBACK datagram with 1 to 16 entries."""
    count = len(entries)
    if not 1 <= count <= MAX_FEEDBACK_ENTRIES:
        raise ValueError(f"feedback needs 1 to {MAX_FEEDBACK_ENTRIES} entries, got {count}")
    parts = [HEADER.pack(VERSION, FrameType.FEEDBACK, 0, path_id, session_id, path_seq, tx_time_us)]
    parts.append(bytes((count,)))
    for e in entries:
        parts.append(
            FEEDBACK_ENTRY.pack(
                e.path_id, 0, e.highest_seq, e.received, e.echo_tx_time_us, e.echo_hold_us
            )
        )
    return b"".join(parts)


def encode_probe(
    path_id: int,
    session_id: int,
    path_seq: int,
    tx_time_us: int,
    *,
    reply_requested: bool,
    padding: int = 0,
) -> bytes:
    """Encode a PROBE datagram with `padding` zero bytes of body (0 to 1400)."""
    if not 0 <= padding <= MAX_PROBE_PADDING:
        raise ValueError(f"probe padding must be 0 to {MAX_PROBE_PADDING} bytes, got {padding}")
    flags = FLAG_REPLY if reply_requested else 0
    header = HEADER.pack(VERSION, FrameType.PROBE, flags, path_id, session_id, path_seq, tx_time_us)
    return header + bytes(padding) if padding else header


def encode_control(
    path_id: int,
    session_id: int,
    path_seq: int,
    tx_time_us: int,
    kind: ControlKind,
    value: bytes = b"",
) -> bytes:
    """Encode a CONTROL datagram (HELLO and CLOSE: empty value; PATH_DOWN: 1 byte;
    PATH_INFO: 8 bytes, see `encode_path_info`; FEATURES: 4 bytes, a bit mask)."""
    if kind == ControlKind.PATH_DOWN:
        expected = 1
    elif kind == ControlKind.PATH_INFO:
        expected = PATH_INFO_VALUE.size
    elif kind == ControlKind.FEATURES:
        expected = FEATURES_VALUE.size
    else:
        expected = 0
    if len(value) != expected:
        raise ValueError(f"{kind.name} value must be {expected} bytes, got {len(value)}")
    header = HEADER.pack(VERSION, FrameType.CONTROL, 0, path_id, session_id, path_seq, tx_time_us)
    return header + bytes((kind,)) + value


def encode_nack(
    path_id: int,
    session_id: int,
    path_seq: int,
    tx_time_us: int,
    seqs: tuple[int, ...] | list[int],
    *,
    gone: bool = False,
) -> bytes:
    """Encode a NACK datagram naming 1 to 64 session sequence numbers."""
    count = len(seqs)
    if not 1 <= count <= MAX_NACK_ENTRIES:
        raise ValueError(f"a NACK names 1 to {MAX_NACK_ENTRIES} numbers, got {count}")
    header = HEADER.pack(
        VERSION, FrameType.NACK, FLAG_GONE if gone else 0, path_id, session_id, path_seq, tx_time_us
    )
    return header + bytes((count,)) + struct.pack(f"!{count}I", *(s & MASK32 for s in seqs))


def encode_fec(
    path_id: int,
    session_id: int,
    path_seq: int,
    tx_time_us: int,
    seqs: tuple[int, ...] | list[int],
    length_xor: int,
    data: bytes,
) -> bytes:
    """Encode a FEC datagram over 2 to 32 DATA (data: the parity, at least 1 byte)."""
    count = len(seqs)
    if not 2 <= count <= MAX_FEC_GROUP or not data or not 0 <= length_xor <= 0xFFFF:
        raise ValueError(f"a FEC parity covers 2 to {MAX_FEC_GROUP} packets with data")
    header = HEADER.pack(VERSION, FrameType.FEC, 0, path_id, session_id, path_seq, tx_time_us)
    return (
        header + struct.pack(f"!BH{count}I", count, length_xor, *(s & MASK32 for s in seqs)) + data
    )


def encode_frag(
    path_id: int,
    session_id: int,
    path_seq: int,
    tx_time_us: int,
    session_seq: int,
    bucket: int,
    bucket_seq: int,
    index: int,
    count: int,
    data: bytes,
    *,
    flags: int = 0,
) -> bytes:
    """Encode a FRAG datagram (2 <= count <= 64, index < count, data non-empty)."""
    if not 2 <= count <= MAX_FRAGMENTS or not 0 <= index < count or not data:
        raise ValueError(f"a fragment is piece 0..count-1 of 2..{MAX_FRAGMENTS}, with data")
    return (
        FRAG_HEADER.pack(
            VERSION,
            FrameType.FRAG,
            flags,
            path_id,
            session_id,
            path_seq,
            tx_time_us,
            session_seq,
            bucket,
            bucket_seq,
            index,
            count,
        )
        + data
    )


def encode(frame: Frame) -> bytes:
    """Encode any frame object (convenience for tests and control messages)."""
    if isinstance(frame, DataFrame):
        return encode_data(
            frame.path_id,
            frame.session_id,
            frame.path_seq,
            frame.tx_time_us,
            frame.session_seq,
            frame.bucket,
            frame.bucket_seq,
            frame.payload,
            jumped=frame.jumped,
            resent=frame.resent,
            hold=frame.hold,
            compact=frame.compact,
            context=frame.context,
            trimmed=frame.trimmed,
            packed=frame.packed,
        )
    if isinstance(frame, FragFrame):
        return encode_frag(
            frame.path_id,
            frame.session_id,
            frame.path_seq,
            frame.tx_time_us,
            frame.session_seq,
            frame.bucket,
            frame.bucket_seq,
            frame.index,
            frame.count,
            frame.data,
            flags=(FLAG_JUMPED if frame.jumped else 0) | (FLAG_RESENT if frame.resent else 0),
        )
    if isinstance(frame, FecFrame):
        return encode_fec(
            frame.path_id,
            frame.session_id,
            frame.path_seq,
            frame.tx_time_us,
            frame.seqs,
            frame.length_xor,
            frame.data,
        )
    if isinstance(frame, NackFrame):
        return encode_nack(
            frame.path_id,
            frame.session_id,
            frame.path_seq,
            frame.tx_time_us,
            frame.seqs,
            gone=frame.gone,
        )
    if isinstance(frame, FeedbackFrame):
        return encode_feedback(
            frame.path_id, frame.session_id, frame.path_seq, frame.tx_time_us, frame.entries
        )
    if isinstance(frame, ProbeFrame):
        return encode_probe(
            frame.path_id,
            frame.session_id,
            frame.path_seq,
            frame.tx_time_us,
            reply_requested=frame.reply_requested,
            padding=frame.padding,
        )
    return encode_control(
        frame.path_id, frame.session_id, frame.path_seq, frame.tx_time_us, frame.kind, frame.value
    )


# -- decoders -------------------------------------------------------------------------------


def peek_session_id(data: Buffer) -> int:
    """The session id of a datagram (for demultiplexing); raises ProtocolError."""
    if not data:
        raise ProtocolError("truncated")
    if data[0] != VERSION:
        raise ProtocolError("bad_version")
    if len(data) < HEADER_SIZE:
        raise ProtocolError("truncated")
    return int.from_bytes(data[4:8], "big")


def is_hello(data: Buffer) -> bool:
    """True if `data` is a well-formed CONTROL HELLO (the only datagram creating a session)."""
    return (
        len(data) == HEADER_SIZE + 1
        and data[0] == VERSION
        and data[1] == FrameType.CONTROL
        and data[2] == 0
        and data[HEADER_SIZE] == ControlKind.HELLO
    )


def is_data(data: Buffer) -> bool:
    """True if `data` starts like a DATA datagram with a non-empty payload."""
    return len(data) > DATA_HEADER_SIZE and data[:3] == _DATA_PREFIX


_DATA_FLAGS: Final = (
    FLAG_JUMPED | FLAG_RESENT | FLAG_HOLD | FLAG_COMPACT | FLAG_CONTEXT | FLAG_TRIMMED | FLAG_PACKED
)
_PACKED_FORM: Final = FLAG_COMPACT | FLAG_TRIMMED | FLAG_PACKED
_BOTH_FORMS: Final = FLAG_COMPACT | FLAG_CONTEXT


def decode_datagram(data: Buffer) -> Frame:
    """Decode one datagram into a frame; any malformed input raises ProtocolError."""
    size = len(data)
    if size == 0:
        raise ProtocolError("truncated")
    if data[0] != VERSION:
        raise ProtocolError("bad_version")
    if size < HEADER_SIZE:
        raise ProtocolError("truncated")
    frame_type = data[1]
    flags = data[2]
    if frame_type == FrameType.DATA:
        if (
            flags & ~_DATA_FLAGS
            or flags & _BOTH_FORMS == _BOTH_FORMS
            or flags & (FLAG_TRIMMED | FLAG_COMPACT) == FLAG_TRIMMED
            or (flags & FLAG_PACKED and flags & _PACKED_FORM != _PACKED_FORM)
        ):
            raise ProtocolError("bad_flags")
        if size < DATA_HEADER_SIZE:
            raise ProtocolError("truncated")
        if size == DATA_HEADER_SIZE:
            raise ProtocolError("empty_payload")
        _, _, _, path_id, session_id, path_seq, tx_us, session_seq, bucket, bucket_seq = (
            DATA_HEADER.unpack_from(data)
        )
        return DataFrame(
            path_id,
            session_id,
            path_seq,
            tx_us,
            session_seq,
            bucket,
            bucket_seq,
            bytes(data[DATA_HEADER_SIZE:]),
            bool(flags & FLAG_JUMPED),
            bool(flags & FLAG_RESENT),
            bool(flags & FLAG_HOLD),
            bool(flags & FLAG_COMPACT),
            bool(flags & FLAG_CONTEXT),
            bool(flags & FLAG_TRIMMED),
            bool(flags & FLAG_PACKED),
        )
    if frame_type == FrameType.FRAG:
        if flags & ~(FLAG_JUMPED | FLAG_RESENT):
            raise ProtocolError("bad_flags")
        if size < FRAG_HEADER_SIZE:
            raise ProtocolError("truncated")
        if size == FRAG_HEADER_SIZE:
            raise ProtocolError("empty_payload")
        (_, _, _, path_id, session_id, path_seq, tx_us, sseq, bucket, bseq, index, count) = (
            FRAG_HEADER.unpack_from(data)
        )
        if not 2 <= count <= MAX_FRAGMENTS or index >= count:
            raise ProtocolError("bad_length")
        return FragFrame(
            path_id,
            session_id,
            path_seq,
            tx_us,
            sseq,
            bucket,
            bseq,
            index,
            count,
            bytes(data[FRAG_HEADER_SIZE:]),
            bool(flags & FLAG_JUMPED),
            bool(flags & FLAG_RESENT),
        )
    _, _, _, path_id, session_id, path_seq, tx_us = HEADER.unpack_from(data)
    body = size - HEADER_SIZE
    if frame_type == FrameType.FEEDBACK:
        if flags:
            raise ProtocolError("bad_flags")
        if body == 0:
            raise ProtocolError("truncated")
        count = data[HEADER_SIZE]
        if not 1 <= count <= MAX_FEEDBACK_ENTRIES:
            raise ProtocolError("bad_length")
        expected = 1 + FEEDBACK_ENTRY_SIZE * count
        if body < expected:
            raise ProtocolError("truncated")
        if body > expected:
            raise ProtocolError("bad_length")
        entries = []
        for offset in range(HEADER_SIZE + 1, size, FEEDBACK_ENTRY_SIZE):
            entry_path, _, highest, received, echo_tx, hold = FEEDBACK_ENTRY.unpack_from(
                data, offset
            )
            entries.append(FeedbackEntry(entry_path, highest, received, echo_tx, hold))
        return FeedbackFrame(path_id, session_id, path_seq, tx_us, tuple(entries))
    if frame_type == FrameType.NACK:
        if flags & ~FLAG_GONE:
            raise ProtocolError("bad_flags")
        if body == 0:
            raise ProtocolError("truncated")
        count = data[HEADER_SIZE]
        if not 1 <= count <= MAX_NACK_ENTRIES:
            raise ProtocolError("bad_length")
        if body < 1 + 4 * count:
            raise ProtocolError("truncated")
        if body > 1 + 4 * count:
            raise ProtocolError("bad_length")
        seqs = struct.unpack_from(f"!{count}I", data, HEADER_SIZE + 1)
        return NackFrame(path_id, session_id, path_seq, tx_us, seqs, bool(flags & FLAG_GONE))
    if frame_type == FrameType.FEC:
        if flags:
            raise ProtocolError("bad_flags")
        if body < 3:
            raise ProtocolError("truncated")
        count = data[HEADER_SIZE]
        if not 2 <= count <= MAX_FEC_GROUP:
            raise ProtocolError("bad_length")
        fixed = 3 + 4 * count
        if body < fixed:
            raise ProtocolError("truncated")
        if body == fixed:
            raise ProtocolError("empty_payload")
        length_xor = int.from_bytes(data[HEADER_SIZE + 1 : HEADER_SIZE + 3], "big")
        seqs = struct.unpack_from(f"!{count}I", data, HEADER_SIZE + 3)
        return FecFrame(
            path_id,
            session_id,
            path_seq,
            tx_us,
            seqs,
            length_xor,
            bytes(data[HEADER_SIZE + fixed :]),
        )
    if frame_type == FrameType.PROBE:
        if flags & ~FLAG_REPLY:
            raise ProtocolError("bad_flags")
        if body > MAX_PROBE_PADDING:
            raise ProtocolError("bad_length")
        return ProbeFrame(path_id, session_id, path_seq, tx_us, bool(flags & FLAG_REPLY), body)
    if frame_type == FrameType.CONTROL:
        if flags:
            raise ProtocolError("bad_flags")
        if body == 0:
            raise ProtocolError("truncated")
        kind = data[HEADER_SIZE]
        value = bytes(data[HEADER_SIZE + 1 :])
        if kind == ControlKind.PATH_DOWN:
            if not value:
                raise ProtocolError("truncated")
            if len(value) > 1:
                raise ProtocolError("bad_length")
        elif kind in (ControlKind.HELLO, ControlKind.CLOSE):
            if value:
                raise ProtocolError("bad_length")
        elif kind == ControlKind.PATH_INFO:
            if len(value) < PATH_INFO_VALUE.size:
                raise ProtocolError("truncated")
            if len(value) > PATH_INFO_VALUE.size:
                raise ProtocolError("bad_length")
            if value[2] & ~PATH_INFO_STANDBY or value[3]:
                raise ProtocolError("bad_flags")
        elif kind == ControlKind.FEATURES:
            # Bits this revision does not know are ignored (a later portal's features).
            if len(value) < FEATURES_VALUE.size:
                raise ProtocolError("truncated")
            if len(value) > FEATURES_VALUE.size:
                raise ProtocolError("bad_length")
        else:
            raise ProtocolError("bad_control")
        return ControlFrame(path_id, session_id, path_seq, tx_us, ControlKind(kind), value)
    raise ProtocolError("bad_type")
