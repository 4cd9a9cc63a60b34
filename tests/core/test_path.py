"""Per-path state: receive accounting, feedback entries, RTT (RFC 6298), loss, delay."""

from __future__ import annotations

import random

import pytest

from braid.core.path import PathState, WindowedMin
from braid.core.wire import FeedbackEntry


def send(path: PathState, count: int, now: float) -> None:
    for _ in range(count):
        path.on_datagram_sent(100, now)


def test_receive_counts_distinct_datagrams_and_builds_feedback() -> None:
    path = PathState(2, now=0.0)
    assert path.on_datagram_received(0, 1000, 50, 0.0, 1.0)
    assert path.on_datagram_received(2, 3000, 50, 0.0, 1.5)
    assert not path.on_datagram_received(2, 3000, 50, 0.0, 1.6)  # link duplicate
    assert path.on_datagram_received(1, 2000, 50, 0.0, 1.7)  # reordered, not newest
    entry = path.feedback_entry(2.0)
    assert entry == FeedbackEntry(2, 2, 3, 3000, 500_000)
    assert (path.datagrams_received, path.bytes_received, path.last_receive_time) == (3, 150, 1.7)


def test_receive_unwraps_path_seq() -> None:
    path = PathState(0, now=0.0)
    for seq in (0, 0x40000000, 0x80000000, 0xC0000000, 0xFFFFFFFF, 0, 1):  # counter wraps
        assert path.on_datagram_received(seq, 0, 1, 0.0, 0.0)
    assert path.rx_highest == 0x100000001
    assert path.feedback_entry(0.0).highest_seq == 1
    assert path.feedback_entry(0.0).received == 7


def test_rtt_follows_rfc6298() -> None:
    path = PathState(0, now=0.0)
    send(path, 10, 0.0)
    # Sent at t=1.000 (tx 1_000_000 us), peer held it 5 ms, feedback back at t=1.105.
    path.on_feedback(FeedbackEntry(0, 3, 4, 1_000_000, 5_000), 1.105)
    assert path.latest_rtt == pytest.approx(0.1)
    assert path.srtt == pytest.approx(0.1)
    assert path.rttvar == pytest.approx(0.05)
    path.on_feedback(FeedbackEntry(0, 5, 6, 2_000_000, 0), 2.2)
    assert path.srtt == pytest.approx(0.875 * 0.1 + 0.125 * 0.2)
    assert path.rttvar == pytest.approx(0.75 * 0.05 + 0.25 * 0.1)
    assert path.min_rtt.value == pytest.approx(0.1)
    stats = path.statistics()
    assert stats.srtt == path.srtt and stats.min_rtt == pytest.approx(0.1)


def test_rtt_sample_across_timestamp_wrap_and_bogus_samples() -> None:
    path = PathState(0, now=0.0)
    send(path, 10, 0.0)
    now = (2**32 + 50_000) / 1e6  # our clock wrapped since the echoed timestamp
    path.on_feedback(FeedbackEntry(0, 1, 2, 2**32 - 30_000, 0), now)
    assert path.latest_rtt == pytest.approx(0.08)
    path.on_feedback(FeedbackEntry(0, 2, 3, 0, 2**32 - 1), now)  # hold > elapsed: negative
    path.on_feedback(FeedbackEntry(0, 3, 4, 0, 0), 20.0)  # 20 s: over RTT_MAX
    assert path.latest_rtt == pytest.approx(0.08)
    assert path.delivered == 4  # the counts still apply


def test_loss_and_stale_feedback() -> None:
    path = PathState(0, now=0.0)
    send(path, 100, 0.0)
    path.on_feedback(FeedbackEntry(0, 49, 45, 0, 0), 0.1)
    assert (path.delivered, path.lost) == (45, 5)
    path.on_feedback(FeedbackEntry(0, 39, 38, 0, 0), 0.2)  # older feedback, reordered
    assert (path.delivered, path.lost) == (45, 5)
    path.on_feedback(FeedbackEntry(0, 49, 47, 0, 0), 0.3)  # late arrivals filled in
    assert (path.delivered, path.lost) == (47, 3)
    path.on_feedback(FeedbackEntry(0, 100, 100, 0, 0), 0.4)  # acknowledges unsent seq 100
    path.on_feedback(FeedbackEntry(0, 60, 70, 0, 0), 0.4)  # more received than sent
    assert (path.delivered, path.lost, path.acked_highest) == (47, 3, 49)
    assert path.statistics().loss_rate == pytest.approx(3 / 50)


def test_one_way_delay_and_jitter() -> None:
    path = PathState(0, now=0.0)
    for index, owd in enumerate((0.010, 0.030, 0.010, 0.030)):
        path.on_datagram_received(index, 0, 1, owd, float(index))
    # Smoothed delay: EWMA with gain 1/8; jitter: mean deviation from it, gain 1/16.
    smoothed, jitter = 0.010, 0.0
    for owd in (0.030, 0.010, 0.030):
        jitter += (abs(owd - smoothed) - jitter) / 16
        smoothed += (owd - smoothed) / 8
    assert path.owd == pytest.approx(smoothed)
    assert path.jitter == pytest.approx(jitter)
    assert path.owd_min.value == pytest.approx(0.010)


def test_windowed_min_forgets_old_samples() -> None:
    window = WindowedMin(10.0)
    assert window.value is None
    window.update(5.0, 0.0)
    window.update(7.0, 5.0)
    assert window.value == 5.0
    window.update(9.0, 12.0)  # new epoch: the previous one still counts
    assert window.value == 5.0
    window.update(8.0, 23.0)  # two epochs later: 5.0 forgotten
    assert window.value == 8.0
    window.update(6.0, 60.0)  # after a long silence only the fresh sample counts
    assert window.value == 6.0


def test_windowed_min_keeps_its_minimum_current_for_readers() -> None:
    # `low` (read for every packet by the scheduler) is kept by `update`: always the
    # smaller of the current and the previous epoch's minimum, the filter's definition.
    rng = random.Random(1)
    for _ in range(300):
        window = WindowedMin(rng.choice([0.5, 1.0, 10.0]))
        assert window.value is None and window.low == float("inf")
        now = 0.0
        for _ in range(100):
            now += rng.expovariate(1 / rng.choice([0.01, 0.3, 2.0]))
            window.update(rng.uniform(0.001, 0.2), now)
            assert window.low == min(window.current, window._previous)
            assert window.value == window.low
