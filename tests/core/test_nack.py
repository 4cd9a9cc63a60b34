"""Tests for the NACK retransmit buffer and gap tracker (issue 7)."""

from __future__ import annotations

from braid.core.retransmit import NackTracker, RetransmitBuffer


def test_buffer_resends_bounded_times_and_ages_out() -> None:
    b = RetransmitBuffer(max_packets=4, max_age=0.5, max_tries=2)
    for s in range(6):
        b.on_sent(s, bytes([s]), 0.0)
    assert b.on_nack([0, 1], 0.1) == []  # evicted by size
    assert b.on_nack([3], 0.1) == [(3, b"\x03")]
    assert b.on_nack([3], 0.2) == [(3, b"\x03")]
    assert b.on_nack([3], 0.3) == []  # try limit
    assert b.on_nack([4], 0.6) == []  # too old
    assert b.resent == 2 and b.missed == 4


def test_tracker_waits_then_nacks_and_respects_deadline() -> None:
    t = NackTracker(deadline=0.2, retry_interval=0.05, max_tries=2)
    t.on_missing(10, 0.0)
    assert t.due(0.01) == []
    assert t.due(0.06) == [10]
    assert t.due(0.08) == []
    assert t.due(0.12) == [10]
    assert t.due(0.15) == []
    assert t.due(0.25) == []
    assert t.pending() == [] and t.abandoned == 1


def test_predictor_verdict_nacks_at_once_and_arrival_clears() -> None:
    t = NackTracker(deadline=0.2, retry_interval=0.05)
    t.on_missing(5, 0.0)
    t.on_missing(6, 0.0)
    assert t.due(0.001, confident={6}) == [6]
    t.on_received(5)
    t.on_received(6)
    assert t.pending() == [] and t.filled == 2
    assert t.due(1.0) == []


def test_tracker_state_bounded() -> None:
    t = NackTracker(max_gaps=8)
    for s in range(100):
        t.on_missing(s, 0.0)
    assert len(t.pending()) == 8
