"""Flow classification: 5-tuple buckets for IPv4 and IPv6, stable, robust to garbage."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib

from hypothesis import given, settings
from hypothesis import strategies as st

from braid.core.classify import (
    SMALL_DATAGRAM,
    flow_bucket,
    is_tcp_data,
    tcp_data_seq,
    waits_for_resends,
)

SRC4 = bytes((10, 0, 0, 1))
DST4 = bytes((192, 0, 2, 7))
SRC6 = bytes.fromhex("20010db8000000000000000000000001")
DST6 = bytes.fromhex("20010db8000000000000000000000002")


def ipv4(
    proto: int, sport: int, dport: int, *, frag: int = 0, ihl: int = 5, body: int = 20
) -> bytes:
    options = bytes(4 * (ihl - 5))
    ports = struct.pack("!HH", sport, dport)
    total = 4 * ihl + 4 + body
    header = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, total, 1, frag, 64, proto, 0, SRC4, DST4)
    return header + options + ports + bytes(body)


def ipv6(next_header: int, sport: int, dport: int, extensions: bytes = b"") -> bytes:
    ports = struct.pack("!HH", sport, dport)
    payload = extensions + ports + bytes(20)
    return (
        struct.pack("!IHBB16s16s", 0x60000000, len(payload), next_header, 64, SRC6, DST6) + payload
    )


def expected(key: bytes) -> int:
    value = zlib.crc32(key)
    return (value ^ (value >> 16)) & 0xFFFF


def test_ipv4_udp_tcp_hash_the_five_tuple() -> None:
    for proto in (6, 17, 132, 136, 33):
        packet = ipv4(proto, 1234, 80)
        assert flow_bucket(packet) == expected(
            bytes([proto]) + SRC4 + DST4 + struct.pack("!HH", 1234, 80)
        )
        # Same flow, different payload: same bucket.
        assert flow_bucket(packet[:-5] + b"xxxxx") == flow_bucket(packet)
    buckets = {flow_bucket(ipv4(17, port, 5201)) for port in range(1000, 1200)}
    assert len(buckets) > 190  # ports matter (a few 16-bit collisions allowed)


def test_ipv4_options_fragments_and_other_protocols() -> None:
    with_options = ipv4(6, 1, 2, ihl=7)
    assert flow_bucket(with_options) == expected(
        bytes([6]) + SRC4 + DST4 + struct.pack("!HH", 1, 2)
    )
    addresses_only = expected(bytes([17]) + SRC4 + DST4)
    assert flow_bucket(ipv4(17, 1, 2, frag=0x2000)) == addresses_only  # first fragment (MF)
    assert flow_bucket(ipv4(17, 9, 9, frag=0x0010)) == addresses_only  # later fragment
    assert flow_bucket(ipv4(1, 1, 2)) == expected(bytes([1]) + SRC4 + DST4)  # ICMP: no ports
    # Header claims options beyond the packet: ports ignored, no error.
    assert flow_bucket(ipv4(6, 1, 2)[:22]) == expected(bytes([6]) + SRC4 + DST4)


def test_ipv6_with_extension_headers() -> None:
    plain = ipv6(17, 4000, 53)
    ports_key = bytes([17]) + SRC6 + DST6 + struct.pack("!HH", 4000, 53)
    assert flow_bucket(plain) == expected(ports_key)
    hop_by_hop = bytes([60, 0]) + bytes(6)  # -> destination options
    dest_opts = bytes([17, 1]) + bytes(14)  # 16 bytes -> UDP
    assert flow_bucket(ipv6(0, 4000, 53, hop_by_hop + dest_opts)) == expected(ports_key)
    first_fragment = bytes([17, 0, 0, 1]) + bytes(4)  # offset 0, M set
    assert flow_bucket(ipv6(44, 4000, 53, first_fragment)) == expected(bytes([17]) + SRC6 + DST6)
    whole = bytes([17, 0, 0, 0]) + bytes(4)  # atomic fragment: ports kept
    assert flow_bucket(ipv6(44, 4000, 53, whole)) == expected(ports_key)
    assert flow_bucket(ipv6(58, 1, 2)) == expected(bytes([58]) + SRC6 + DST6)  # ICMPv6
    # An extension header cut short: no ports, no error.
    assert flow_bucket(ipv6(0, 1, 2)[:44]) == expected(bytes([0]) + SRC6 + DST6)


def test_garbage_and_short_input() -> None:
    for data in (b"", b"\x45", b"\x60" * 39, b"\x00" * 100, b"\xff" * 60, bytes(range(256))):
        assert 0 <= flow_bucket(data) <= 0xFFFF
    assert flow_bucket(b"") == 0
    assert flow_bucket(b"\x20" + bytes(59)) == 0  # neither IPv4 nor IPv6


@settings(max_examples=2000)
@given(st.binary(max_size=100), st.sampled_from([0x45, 0x46, 0x4F, 0x60, 0x00]))
def test_any_bytes_give_a_bucket(data: bytes, first: int) -> None:
    assert 0 <= flow_bucket(bytes([first]) + data) <= 0xFFFF


def test_stable_across_processes() -> None:
    packet = ipv4(6, 443, 50000)
    code = f"from braid.core.classify import flow_bucket; print(flow_bucket({packet!r}))"
    results = set()
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        results.add(int(out.stdout))
    assert results == {flow_bucket(packet)}


def _tcp(
    flags: int, payload: int, *, version: int = 4, ihl: int = 5, frag: int = 0, seq: int = 1
) -> bytes:
    """A TCP segment (20-byte header, `flags`, `payload` bytes of data) in IPv4 or IPv6."""
    tcp = struct.pack("!HHIIBBHHH", 40000, 443, seq, 1, 0x50, flags, 65535, 0, 0)
    tcp += bytes(payload)
    if version == 6:
        header = struct.pack("!IHBB16s16s", 0x60000000, len(tcp), 6, 64, SRC6, DST6)
        return header + tcp
    options = bytes(4 * (ihl - 5))
    total = 4 * ihl + len(tcp)
    header = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, total, 1, frag, 64, 6, 0, SRC4, DST4)
    return header + options + tcp


def test_tcp_data_is_told_from_pure_acknowledgements() -> None:
    ack, syn, fin, rst, psh = 0x10, 0x02, 0x01, 0x04, 0x08
    for version in (4, 6):
        assert is_tcp_data(_tcp(ack | psh, 1200, version=version))
        assert not is_tcp_data(_tcp(ack, 0, version=version))  # a pure acknowledgement
        for flag in (syn, syn | ack, fin | ack, rst):
            assert is_tcp_data(_tcp(flag, 0, version=version)), (version, flag)
    assert not is_tcp_data(_tcp(ack, 0, ihl=6))  # options in the IPv4 header
    assert is_tcp_data(_tcp(ack, 1, ihl=6))
    assert not is_tcp_data(_tcp(ack, 0, frag=0x4000))  # DF: not a fragment
    assert is_tcp_data(_tcp(ack, 8, frag=0x2000))  # a first fragment, judged by its header
    assert is_tcp_data(_tcp(ack, 0, frag=185)[:28])  # a later fragment: data
    assert is_tcp_data(_tcp(ack, 0)[:30])  # a header cut short counts as data


def test_only_tcp_is_tcp_data_and_garbage_is_not() -> None:
    assert not is_tcp_data(ipv4(17, 5000, 5001))
    assert not is_tcp_data(ipv6(17, 5000, 5001))
    assert not is_tcp_data(ipv6(0, 5000, 5001, bytes((6, 0)) + bytes(6)))  # extension
    for garbage in (b"", b"\x45", bytes(19), b"\x60" + bytes(30), b"\x20" * 60):
        assert not is_tcp_data(garbage)


def test_which_flows_wait_for_resends() -> None:
    big = SMALL_DATAGRAM + 1 - 24  # the body after the ports that makes it one byte over
    for version, make in ((4, ipv4), (6, ipv6)):
        assert waits_for_resends(_tcp(0x10, 0, version=version))  # TCP, even an ACK
        assert not waits_for_resends(make(17, 5000, 5001))  # a small datagram (audio)
        assert not waits_for_resends(make(1 if version == 4 else 58, 0, 0))  # ICMP
    assert waits_for_resends(ipv4(17, 5000, 443, body=big))  # QUIC, video
    assert not waits_for_resends(ipv4(17, 5000, 443, body=big - 1))
    ef = bytearray(ipv4(17, 5000, 5001, body=1200))
    ef[1] = 46 << 2  # DSCP EF: expedited forwarding (voice), whatever its size
    assert not waits_for_resends(bytes(ef))
    for garbage in (b"", b"\x45", bytes(19), b"\x60" + bytes(30), b"\x20" * 60):
        assert not waits_for_resends(garbage)


@given(st.binary(max_size=80))
@settings(max_examples=300, deadline=None)
def test_is_tcp_data_never_raises(data: bytes) -> None:
    assert isinstance(is_tcp_data(data), bool)
    assert tcp_data_seq(data) >= -1


def test_tcp_data_seq_reads_the_sequence_number_of_data() -> None:
    ack, syn, psh = 0x10, 0x02, 0x08
    for version in (4, 6):
        assert tcp_data_seq(_tcp(ack | psh, 1200, version=version, seq=0xFEDCBA98)) == 0xFEDCBA98
        assert tcp_data_seq(_tcp(syn, 0, version=version, seq=7)) == 7
        assert tcp_data_seq(_tcp(ack, 0, version=version, seq=7)) == -1  # pure ack
    assert tcp_data_seq(_tcp(ack, 1, ihl=6, seq=9)) == 9  # IPv4 options
    assert tcp_data_seq(_tcp(ack, 0, frag=185, seq=9)[:28]) == 0  # later fragment: unknown
    assert tcp_data_seq(_tcp(ack, 0)[:30]) == 0  # a header cut short: unknown
    assert tcp_data_seq(ipv4(17, 5000, 5001)) == -1
    assert tcp_data_seq(b"") == -1


@given(
    st.binary(min_size=20, max_size=60),
    st.integers(min_value=0, max_value=255),
    st.integers(min_value=0, max_value=15),
)
@settings(max_examples=300, deadline=None)
def test_tcp_data_seq_shortcut_agrees_with_the_general_parse(
    tcp: bytes, flags: int, offset: int
) -> None:
    """The same TCP bytes behind a 20-byte IPv4 header (the shortcut) and behind one
    with 4 bytes of options (the general parse) give the same answer."""
    segment = bytearray(tcp)
    segment[12] = offset << 4
    segment[13] = flags
    plain = ipv4(6, 0, 0, body=0)[:20] + bytes(segment)
    padded = ipv4(6, 0, 0, ihl=6, body=0)[:24] + bytes(segment)
    assert plain[0] == 0x45 and padded[0] == 0x46
    assert tcp_data_seq(plain) == tcp_data_seq(padded)
