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


def test_session_splits_large_packets_over_slow_paths_when_it_is_faster() -> None:
    # 2 x 1 Mbit/s, 20 ms; one 1400-byte packet every 100 ms (idle links). Whole, a
    # packet spends 11.8 ms serialising on one link; in two pieces, 6.2 ms on each.
    import statistics

    from braid.core.session import SessionConfig

    from .ratenet import RateNet

    def latency(split_below: int, rate: float = 125_000.0) -> tuple[float, int]:
        net = RateNet(
            {0: (rate, 0.020), 1: (rate, 0.020)},
            config=SessionConfig(split_below=split_below),
            packet_size=1400,
            source_rate=14_000,
        )
        net.run_until(10.0)
        lat = [t - s * 0.1 for (t, _), s in zip(net.delivered, net.deliver_seqs, strict=True)]
        assert len(lat) >= 95 and net.deliver_seqs == sorted(net.deliver_seqs)
        return statistics.median(lat), net.local.statistics().split

    whole, none = latency(0)
    split, count = latency(2_000_000)
    assert none == 0 and count >= 95
    assert whole - split > 0.004  # 31.4 -> 25.8 ms measured
    # Links faster than the threshold: never split.
    assert latency(2_000_000, rate=1_250_000.0)[1] == 0
