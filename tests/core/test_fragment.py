"""Tests for fragmentation and bounded reassembly (issue 7)."""

from __future__ import annotations

import random

import pytest

from braid.core.fragment import Fragment, Reassembler, inner_mtu, split, split_lowers_latency


def test_split_and_reassemble_any_order() -> None:
    rng = random.Random(3)
    pkt = rng.randbytes(3000)
    frags = split(pkt, 1200, packet_id=7)
    assert [f.count for f in frags] == [3, 3, 3]
    assert all(len(f.data) <= 1200 for f in frags)
    rng.shuffle(frags)
    r = Reassembler()
    out = [r.on_fragment(f, 0.0) for f in frags]
    assert out[:2] == [None, None] and out[2] == pkt
    assert r.held_bytes == 0 and r.completed == 1


def test_forced_parts_and_small_packet() -> None:
    frags = split(b"x" * 1000, 1500, packet_id=1, parts=2)
    assert [len(f.data) for f in frags] == [500, 500]
    assert split(b"ab", 1500, packet_id=2) == [Fragment(2, 0, 1, b"ab")]
    with pytest.raises(ValueError):
        split(b"x" * 10000, 10, packet_id=3)


def test_malformed_duplicate_and_inconsistent_are_counted() -> None:
    r = Reassembler()
    assert r.on_fragment(Fragment(1, 5, 3, b"a"), 0.0) is None
    assert r.on_fragment(Fragment(1, 0, 3, b"a"), 0.0) is None
    assert r.on_fragment(Fragment(1, 0, 3, b"a"), 0.0) is None
    assert r.on_fragment(Fragment(1, 1, 4, b"a"), 0.0) is None
    assert r.malformed == 3


def test_bounded_state_and_timeout() -> None:
    r = Reassembler(max_packets=4, max_bytes=100, timeout=0.5)
    for pid in range(10):
        r.on_fragment(Fragment(pid, 0, 2, b"y" * 10), 0.0)
    assert len(r._partial) == 4 and r.evicted == 6
    for pid in range(20, 30):
        r.on_fragment(Fragment(pid, 0, 2, b"z" * 60), 0.1)
    assert r.held_bytes <= 100
    r.expire(1.0)
    assert r.held_bytes == 0 and r.timed_out >= 1


def test_inner_mtu_and_split_latency_rule() -> None:
    assert inner_mtu([1500, 1400], 60) == 1340
    # 1 + 1 Mbit/s, equal delay: a 1400-byte packet split in two arrives ~5.6 ms earlier.
    assert split_lowers_latency(1400, [1e6, 1e6], [0.02, 0.02])
    # Fast link next to a slow one: keep it whole.
    assert not split_lowers_latency(1400, [100e6, 1e6], [0.02, 0.02])
