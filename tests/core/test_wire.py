"""The v1 wire codec: round trips, truncation, trailing bytes, bad fields, any input."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from braid.core import wire
from braid.core.wire import (
    DATA_HEADER_SIZE,
    DROP_REASONS,
    HEADER_SIZE,
    ControlFrame,
    ControlKind,
    DataFrame,
    FecFrame,
    FeedbackEntry,
    FeedbackFrame,
    FragFrame,
    NackFrame,
    ProbeFrame,
    ProtocolError,
    decode_datagram,
    encode,
    is_hello,
    peek_session_id,
    unwrap32,
)

U32 = st.integers(0, 0xFFFFFFFF)
PATH = st.integers(0, 255)

ENTRY = FeedbackEntry(7, 0xFFFFFFFE, 123456, 0xDEADBEEF, 250)
FRAMES: list[wire.Frame] = [
    DataFrame(3, 0x01020304, 5, 6, 7, 0xBEEF, 9, b"\x45payload"),
    FeedbackFrame(1, 2, 3, 4, (ENTRY,)),
    FeedbackFrame(1, 2, 3, 4, tuple(FeedbackEntry(i, i, i, i, i) for i in range(16))),
    ProbeFrame(0, 2, 3, 4, reply_requested=True),
    ProbeFrame(0, 2, 3, 4, reply_requested=False, padding=1400),
    ControlFrame(4, 5, 6, 7, ControlKind.HELLO),
    ControlFrame(4, 5, 6, 7, ControlKind.CLOSE),
    ControlFrame(4, 5, 6, 7, ControlKind.PATH_DOWN, b"\x02"),
    DataFrame(3, 1, 5, 6, 7, 8, 9, b"\x45resent", resent=True),
    DataFrame(3, 1, 5, 6, 7, 8, 9, b"\x45both", jumped=True, resent=True),
    DataFrame(3, 1, 5, 6, 7, 8, 9, b"\x07trimmed", compact=True, trimmed=True),
    DataFrame(3, 1, 5, 6, 7, 8, 9, b"\x07packed", compact=True, trimmed=True, packed=True),
    NackFrame(0, 2, 3, 4, (5, 0xFFFFFFFF)),
    NackFrame(1, 2, 3, 4, tuple(range(64)), gone=True),
    FecFrame(2, 3, 4, 5, (7, 8), 0x1234, b"\x01parity"),
    FecFrame(2, 3, 4, 5, tuple(range(32)), 0, bytes(1400)),
    FragFrame(1, 2, 3, 4, 5, 6, 7, 0, 2, b"\x45first"),
    FragFrame(1, 2, 3, 4, 5, 6, 7, 63, 64, b"last", jumped=True, resent=True),
]


def reason(data: bytes) -> str:
    with pytest.raises(ProtocolError) as info:
        decode_datagram(data)
    assert info.value.reason in DROP_REASONS
    return info.value.reason


@pytest.mark.parametrize("frame", FRAMES, ids=lambda f: type(f).__name__)
def test_round_trip(frame: wire.Frame) -> None:
    data = encode(frame)
    assert decode_datagram(data) == frame
    assert encode(decode_datagram(data)) == data
    assert peek_session_id(data) == frame.session_id


def test_data_layout_matches_protocol_md() -> None:
    data = wire.encode_data(3, 0x01020304, 5, 6, 7, 0xBEEF, 9, b"\x45")
    assert data == (
        bytes([1, 1, 0, 3]) + struct.pack("!IIIIHI", 0x01020304, 5, 6, 7, 0xBEEF, 9) + b"\x45"
    )
    assert DATA_HEADER_SIZE == 26 and HEADER_SIZE == 16


def test_feedback_layout_matches_protocol_md() -> None:
    data = encode(FeedbackFrame(1, 2, 3, 4, (ENTRY,)))
    assert len(data) == 16 + 1 + 19
    assert data[16] == 1
    assert data[17:] == bytes([7, 0, 0]) + struct.pack("!IIII", 0xFFFFFFFE, 123456, 0xDEADBEEF, 250)


@pytest.mark.parametrize("frame", FRAMES, ids=lambda f: type(f).__name__)
def test_every_truncation_is_rejected_or_a_shorter_body(frame: wire.Frame) -> None:
    data = encode(frame)
    for size in range(len(data)):
        cut = data[:size]
        if isinstance(frame, ProbeFrame) and size >= HEADER_SIZE:
            # PROBE padding is "the rest of the datagram": a shorter probe.
            assert decode_datagram(cut) == ProbeFrame(
                0, 2, 3, 4, frame.reply_requested, size - HEADER_SIZE
            )
        elif isinstance(frame, FragFrame) and size >= wire.FRAG_HEADER_SIZE:
            # A fragment's data is the rest of the datagram.
            if size == wire.FRAG_HEADER_SIZE:
                assert reason(cut) == "empty_payload"
            else:
                decoded = decode_datagram(cut)
                assert isinstance(decoded, FragFrame)
                assert decoded.data == frame.data[: size - wire.FRAG_HEADER_SIZE]
        elif isinstance(frame, FecFrame) and size >= HEADER_SIZE + 3 + 4 * len(frame.seqs):
            # The parity is the rest of the datagram too.
            fixed = HEADER_SIZE + 3 + 4 * len(frame.seqs)
            if size == fixed:
                assert reason(cut) == "empty_payload"
            else:
                decoded = decode_datagram(cut)
                assert isinstance(decoded, FecFrame) and decoded.data == frame.data[: size - fixed]
        elif isinstance(frame, DataFrame) and size > DATA_HEADER_SIZE:
            # DATA payload is the rest of the datagram (UDP keeps boundaries).
            decoded = decode_datagram(cut)
            assert isinstance(decoded, DataFrame)
            assert decoded.payload == frame.payload[: size - DATA_HEADER_SIZE]
        elif isinstance(frame, DataFrame) and size == DATA_HEADER_SIZE:
            assert reason(cut) == "empty_payload"
        else:
            assert reason(cut) == "truncated", size


@pytest.mark.parametrize(
    "frame",
    [f for f in FRAMES if isinstance(f, FeedbackFrame | ControlFrame)],
    ids=lambda f: type(f).__name__,
)
def test_trailing_garbage_rejected_where_size_is_exact(frame: wire.Frame) -> None:
    data = encode(frame)
    for extra in (b"\0", b"\xff" * 19, b"x" * 100):
        assert reason(data + extra) == "bad_length"


def test_probe_padding_limit() -> None:
    # Path MTU probes: up to a 9000-byte jumbo frame's UDP payload.
    probe = encode(ProbeFrame(0, 2, 3, 4, reply_requested=False, padding=8984))
    assert reason(probe + b"\0") == "bad_length"
    with pytest.raises(ValueError):
        wire.encode_probe(0, 0, 0, 0, reply_requested=False, padding=8985)


def test_bad_version_type_flags() -> None:
    good = encode(FRAMES[0])
    assert reason(b"") == "truncated"
    assert reason(b"\x02") == "bad_version"
    assert reason(bytes([0]) + good[1:]) == "bad_version"
    assert reason(bytes([2]) + good[1:]) == "bad_version"
    for bad_type in (0, 5, 255):
        assert reason(good[:1] + bytes([bad_type]) + good[2:]) == "bad_type"
    # (trimmed: only with compact; packed: only with compact and trimmed)
    for flags in (1, 0x80, 0x40, 0x60, 0x90, 0xC0, 0xE0):
        assert reason(good[:2] + bytes([flags]) + good[3:]) == "bad_flags"
    probe = encode(ProbeFrame(0, 2, 3, 4, reply_requested=True))
    assert reason(probe[:2] + b"\x02" + probe[3:]) == "bad_flags"
    hello = encode(ControlFrame(4, 5, 6, 7, ControlKind.HELLO))
    assert reason(hello[:2] + b"\x01" + hello[3:]) == "bad_flags"
    feedback = encode(FRAMES[1])
    assert reason(feedback[:2] + b"\x01" + feedback[3:]) == "bad_flags"


def test_empty_payload_and_feedback_counts() -> None:
    data = encode(FRAMES[0])
    assert reason(data[:DATA_HEADER_SIZE]) == "empty_payload"
    header = encode(FRAMES[1])[:HEADER_SIZE]
    assert reason(header + b"\x00") == "bad_length"
    assert reason(header + b"\x11" + bytes(19 * 17)) == "bad_length"
    assert reason(header + b"\x02" + bytes(19)) == "truncated"
    with pytest.raises(ValueError):
        wire.encode_feedback(0, 0, 0, 0, ())


def test_control_kinds() -> None:
    header = encode(FRAMES[5])[:HEADER_SIZE]
    assert reason(header + b"\x00") == "bad_control"
    assert reason(header + b"\x06") == "bad_control"
    assert reason(header + b"\x03") == "truncated"  # PATH_DOWN without its path id
    assert reason(header + b"\x03\x01\x02") == "bad_length"
    assert reason(header + b"\x01\x00") == "bad_length"  # HELLO with a value
    with pytest.raises(ValueError):
        wire.encode_control(0, 0, 0, 0, ControlKind.HELLO, b"x")
    # FEATURES (rev. 2026-11-29c): 4 bytes, a bit mask; bits this revision does not know
    # are accepted (a later portal's features), a wrong length is not.
    assert reason(header + b"\x05" + bytes(3)) == "truncated"
    assert reason(header + b"\x05" + bytes(5)) == "bad_length"
    for mask in (0, wire.FEATURE_HOLD, 0xFFFFFFFF):
        value = wire.FEATURES_VALUE.pack(mask)
        frame = wire.decode_datagram(wire.encode_control(1, 2, 3, 4, ControlKind.FEATURES, value))
        assert isinstance(frame, wire.ControlFrame) and frame.kind == ControlKind.FEATURES
        assert wire.FEATURES_VALUE.unpack(frame.value) == (mask,)
    with pytest.raises(ValueError):
        wire.encode_control(0, 0, 0, 0, ControlKind.FEATURES, b"\x01")
    info = wire.encode_path_info(wire.PathInfo(3, True, 50_000_000))
    assert reason(header + b"\x04" + info[:7]) == "truncated"
    assert reason(header + b"\x04" + info + b"\x00") == "bad_length"
    assert reason(header + b"\x04" + info[:2] + b"\x02" + info[3:]) == "bad_flags"
    assert reason(header + b"\x04" + info[:3] + b"\x01" + info[4:]) == "bad_flags"
    with pytest.raises(ValueError):
        wire.encode_control(0, 0, 0, 0, ControlKind.PATH_INFO, info[:7])


@pytest.mark.parametrize(
    ("info", "back"),
    [
        (wire.PathInfo(), wire.PathInfo()),
        (wire.PathInfo(10, True, 50_000_000), wire.PathInfo(10, True, 50_000_000)),
        (wire.PathInfo(70_000, False, 1_499), wire.PathInfo(65_535, False, 1_000)),
        (wire.PathInfo(0, False, 400), wire.PathInfo(0, False, 1_000)),
        (wire.PathInfo(1, False, 10**13), wire.PathInfo(1, False, 0xFFFFFFFF * 1000)),
    ],
)
def test_path_info_round_trip(info: wire.PathInfo, back: wire.PathInfo) -> None:
    frame = ControlFrame(2, 7, 1, 5, ControlKind.PATH_INFO, wire.encode_path_info(info))
    decoded = decode_datagram(encode(frame))
    assert decoded == frame
    assert isinstance(decoded, ControlFrame)
    assert wire.decode_path_info(decoded.value) == back


def test_feedback_reserved_bytes_are_ignored() -> None:
    data = bytearray(encode(FRAMES[1]))
    data[18:20] = b"\xff\xff"
    assert decode_datagram(bytes(data)) == FRAMES[1]


def test_peek_session_id_and_is_hello() -> None:
    hello = encode(ControlFrame(4, 0xCAFEF00D, 0, 0, ControlKind.HELLO))
    assert is_hello(hello)
    assert peek_session_id(hello) == 0xCAFEF00D
    assert not is_hello(hello + b"\0")
    assert not is_hello(encode(ControlFrame(4, 1, 0, 0, ControlKind.CLOSE)))
    assert not is_hello(encode(FRAMES[0]))
    assert not is_hello(b"")
    for bad, why in (
        (b"", "truncated"),
        (b"\x01" * 15, "truncated"),
        (b"\x07" * 20, "bad_version"),
    ):
        with pytest.raises(ProtocolError) as info:
            peek_session_id(bad)
        assert info.value.reason == why


def test_memoryview_and_bytearray_inputs() -> None:
    data = encode(FRAMES[0])
    assert decode_datagram(memoryview(data)) == FRAMES[0]
    assert decode_datagram(bytearray(data)) == FRAMES[0]


@pytest.mark.parametrize(
    ("value", "ref", "expected"),
    [
        (0, 0, 0),
        (5, 3, 5),
        (3, 5, 3),
        (0, 0xFFFFFFFF, 0x100000000),  # forward across the wrap
        (0xFFFFFFFF, 0x100000000, 0xFFFFFFFF),  # backward across the wrap
        (0xFFFFFFFF, 0, -1),
        (0x80000000, 0, -0x80000000),  # exactly half way resolves backwards
        (0x7FFFFFFF, 0, 0x7FFFFFFF),
        (10, 5 * 2**32 + 0xFFFFFFF0, 6 * 2**32 + 10),
    ],
)
def test_unwrap32(value: int, ref: int, expected: int) -> None:
    assert unwrap32(value, ref) == expected
    assert unwrap32(value, ref) & 0xFFFFFFFF == value


@given(U32, st.integers(-(2**40), 2**40))
def test_unwrap32_is_nearest(value: int, ref: int) -> None:
    result = unwrap32(value, ref)
    assert result % 2**32 == value
    assert -(2**31) <= result - ref < 2**31


@settings(max_examples=2000)
@given(st.binary(max_size=120))
def test_any_bytes_decode_or_protocol_error(data: bytes) -> None:
    try:
        frame = decode_datagram(data)
    except ProtocolError as exc:
        assert exc.reason in DROP_REASONS
    else:
        assert encode(frame) == data or isinstance(frame, ProbeFrame | FeedbackFrame)


@settings(max_examples=1000)
@given(st.sampled_from([encode(f) for f in FRAMES]), st.data())
def test_mutated_datagrams_decode_or_protocol_error(data: bytes, draw: st.DataObject) -> None:
    mutated = bytearray(data)
    for _ in range(draw.draw(st.integers(1, 4))):
        index = draw.draw(st.integers(0, len(mutated) - 1))
        mutated[index] = draw.draw(st.integers(0, 255))
    cut = draw.draw(st.integers(0, len(mutated)))
    try:
        decode_datagram(bytes(mutated[:cut]))
    except ProtocolError as exc:
        assert exc.reason in DROP_REASONS


@given(PATH, U32, U32, U32, U32, st.integers(0, 0xFFFF), U32, st.binary(min_size=1, max_size=64))
def test_data_round_trip_property(
    path_id: int,
    session_id: int,
    path_seq: int,
    tx: int,
    session_seq: int,
    bucket: int,
    bucket_seq: int,
    payload: bytes,
) -> None:
    frame = DataFrame(path_id, session_id, path_seq, tx, session_seq, bucket, bucket_seq, payload)
    assert decode_datagram(encode(frame)) == frame
    assert wire.is_data(encode(frame))


@given(PATH, U32, U32, U32, st.lists(st.tuples(PATH, U32, U32, U32, U32), min_size=1, max_size=16))
def test_feedback_round_trip_property(
    path_id: int, session_id: int, seq: int, tx: int, entries: list[tuple[int, ...]]
) -> None:
    frame = FeedbackFrame(path_id, session_id, seq, tx, tuple(FeedbackEntry(*e) for e in entries))
    assert decode_datagram(encode(frame)) == frame


def test_nack_frame_limits() -> None:
    nack = encode(NackFrame(0, 2, 3, 4, (5, 6)))
    assert nack[1] == 8 and nack[HEADER_SIZE] == 2 and len(nack) == HEADER_SIZE + 1 + 8
    assert reason(nack[:2] + b"\x02" + nack[3:]) == "bad_flags"
    assert reason(nack[:HEADER_SIZE]) == "truncated"
    assert reason(nack[:HEADER_SIZE] + b"\x00") == "bad_length"
    assert reason(nack[:HEADER_SIZE] + b"\x41" + bytes(4 * 65)) == "bad_length"
    assert reason(nack[:-1]) == "truncated"
    assert reason(nack + b"\0") == "bad_length"
    with pytest.raises(ValueError):
        wire.encode_nack(0, 0, 0, 0, list(range(65)))
    with pytest.raises(ValueError):
        wire.encode_nack(0, 0, 0, 0, [])


def test_fec_frame_limits() -> None:
    fec = encode(FecFrame(0, 2, 3, 4, (5, 6), 7, b"xy"))
    assert fec[1] == 9 and fec[HEADER_SIZE] == 2 and len(fec) == HEADER_SIZE + 3 + 8 + 2
    assert reason(fec[:2] + b"\x01" + fec[3:]) == "bad_flags"
    assert reason(fec[: HEADER_SIZE + 2]) == "truncated"
    assert reason(fec[:HEADER_SIZE] + b"\x01" + fec[HEADER_SIZE + 1 :]) == "bad_length"
    assert reason(fec[:HEADER_SIZE] + b"\x21" + fec[HEADER_SIZE + 1 :]) == "bad_length"
    assert reason(fec[: HEADER_SIZE + 3 + 8]) == "empty_payload"
    assert reason(fec[: HEADER_SIZE + 3 + 5]) == "truncated"
    with pytest.raises(ValueError):
        wire.encode_fec(0, 0, 0, 0, [1], 0, b"x")
    with pytest.raises(ValueError):
        wire.encode_fec(0, 0, 0, 0, [1, 2], 0, b"")


def test_frag_frame_limits() -> None:
    frag = encode(FragFrame(0, 2, 3, 4, 5, 6, 7, 1, 3, b"xyz"))
    assert frag[1] == 10 and len(frag) == 28 + 3 and frag[26:28] == bytes([1, 3])
    assert reason(frag[:2] + b"\x01" + frag[3:]) == "bad_flags"
    assert reason(frag[:26] + bytes([3, 3]) + frag[28:]) == "bad_length"  # index >= count
    assert reason(frag[:26] + bytes([0, 1]) + frag[28:]) == "bad_length"  # one piece
    assert reason(frag[:26] + bytes([0, 65]) + frag[28:]) == "bad_length"
    with pytest.raises(ValueError):
        wire.encode_frag(0, 0, 0, 0, 0, 0, 0, 2, 2, b"x")
