"""`fair_queue`: a flow next to a saturating one waits in its own queue, not behind the
other's (fake time, no I/O)."""

from __future__ import annotations

import statistics
from collections import deque

import pytest

from braid.core.session import SessionConfig

from .pairnet import udp_packet
from .ratenet import RateNet

SECOND = 1000  # bytes of a second-flow packet (the flood's are 1200)


class TwoFlows(RateNet):
    """The saturating flow 1, and flow 2 offered at `second_rate` bytes/s from 2 s on.
    Both wait for the session in one FIFO, as in the TUN's kernel queue: flow 2 is sent
    first whenever the session is writable (it came earlier than the flood's next)."""

    def __init__(self, *args: object, second_rate: float, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.second_rate = second_rate
        self.next_second = 2.0
        self.waiting: deque[tuple[int, float]] = deque()
        self.offered: dict[int, float] = {}
        self.count = 0

    def _source(self, now: float) -> None:
        while self.next_second <= now:
            self.waiting.append((self.count, self.next_second))
            self.count += 1
            self.next_second += SECOND / self.second_rate
        while self.waiting and self.local.writable:
            seq, at = self.waiting[0]
            if not self.local.send_packet(udp_packet(2, seq, SECOND), now=now):
                break
            self.waiting.popleft()
            self.offered[seq] = at
        super()._source(now)

    def second_delays(self) -> list[float]:
        """Seconds from offered to delivered, per flow-2 packet delivered."""
        return [
            at - self.offered[seq]
            for (at, size), seq in zip(self.delivered, self.deliver_seqs, strict=True)
            if size == SECOND
        ]


@pytest.mark.parametrize("fair", [True, False])
def test_a_flow_next_to_a_saturating_one_waits_only_for_the_paths(fair: bool) -> None:
    """Two paths of 1 MB/s, 10 and 30 ms one way; flow 1 keeps the session's queues full
    (`queue_limit` 0.1 s: 200 kB), flow 2 offers 300 kB/s. Without `fair_queue` every
    flow-2 packet waits behind the whole queue (about 100 ms); with it, only behind what
    the paths hold (the 20 ms spread's worth of the fast path's rate and 5 ms more), and
    the flood keeps the rest of the capacity. Once both run, nothing is late either way."""
    config = SessionConfig(early_drop=0.0, nack=False, queue_limit=0.1, fair_queue=fair)
    net = TwoFlows(
        {0: (1_000_000.0, 0.010), 1: (1_000_000.0, 0.030)}, config=config, second_rate=300_000.0
    )
    net.run_until(2.0)
    start = net.remote.statistics().reorder  # (the flood's start has a few late packets)
    net.run_until(6.0)
    delays = net.second_delays()
    assert len(delays) > 0.9 * 300_000 * 3.5 / SECOND, len(delays)
    median = statistics.median(delays)
    if fair:
        assert median < 0.060, median
    else:
        assert median > 0.090, median
    first = sum(size for at, size in net.delivered if size != SECOND and 3.0 <= at < 6.0) / 3
    second = sum(size for at, size in net.delivered if size == SECOND and 3.0 <= at < 6.0) / 3
    assert 0.27e6 < second < 0.33e6, second  # what it offers
    assert first + second > 0.9 * 2e6 * 1200 / (1200 + 60), (first, second)
    reorder = net.remote.statistics().reorder
    assert reorder.late == start.late
    assert reorder.gaps_skipped_timeout == start.gaps_skipped_timeout
    stats = net.local.statistics()
    assert stats.send_no_path == 0
    # Each flow in order, and every flow-2 packet the session took was delivered (a few
    # may still be on the way at the end).
    second_seqs = [
        seq
        for (_, size), seq in zip(net.delivered, net.deliver_seqs, strict=True)
        if size == SECOND
    ]
    assert second_seqs == sorted(second_seqs) and len(set(second_seqs)) == len(second_seqs)
    assert len(net.offered) - len(second_seqs) < 50, (len(net.offered), len(second_seqs))


def test_fair_queue_carries_on_when_a_path_dies() -> None:
    """The same two flows with `fair_queue`; the 30 ms path loses everything from 3 s on.
    The session takes it down and both flows go on over the other path (at its rate),
    each in order."""
    config = SessionConfig(early_drop=0.0, nack=False, queue_limit=0.1, fair_queue=True)
    net = TwoFlows(
        {0: (1_000_000.0, 0.010), 1: (1_000_000.0, 0.030)}, config=config, second_rate=300_000.0
    )
    net.run_until(3.0)
    net.up[1].loss = net.down[1].loss = 1.0
    net.run_until(7.0)
    assert {p.path_id: p.up for p in net.local.statistics().paths} == {0: True, 1: False}
    assert net.local.statistics().send_no_path == 0
    first = sum(size for at, size in net.delivered if size != SECOND and 5.0 <= at < 7.0) / 2
    second = sum(size for at, size in net.delivered if size == SECOND and 5.0 <= at < 7.0) / 2
    assert 0.27e6 < second < 0.33e6, second
    assert first + second > 0.85 * 1e6 * 1200 / (1200 + 60), (first, second)
    second_seqs = [
        seq
        for (_, size), seq in zip(net.delivered, net.deliver_seqs, strict=True)
        if size == SECOND
    ]
    assert second_seqs == sorted(second_seqs)


@pytest.mark.parametrize("offered", [280_000.0, 290_000.0, 300_000.0, 310_000.0, 320_000.0])
def test_a_new_flow_jumps_the_queues_only_within_a_share_of_a_path(offered: float) -> None:
    """Without `fair_queue`: flow 2's first packets have nothing of their flow queued
    (sparse) and go to the head of path 0's queue, delaying the flood's packets queued
    there by their transmission time, which the scheduler did not count when it placed
    them. Unbounded, 69 such jumps in 0.45 s put path 0 behind path 1 past the egress's
    timeout (138 of the flood's packets late at 300 kB/s, late ones at three of these five
    rates). Each path lets sparse packets jump only a share of its rate: none late."""
    config = SessionConfig(early_drop=0.0, nack=False, queue_limit=0.1)
    net = TwoFlows(
        {0: (1_000_000.0, 0.010), 1: (1_000_000.0, 0.030)}, config=config, second_rate=offered
    )
    net.run_until(1.9)
    start = net.remote.statistics().reorder
    net.run_until(4.0)
    reorder = net.remote.statistics().reorder
    assert reorder.late == start.late, (reorder.late, start.late)
    assert reorder.gaps_skipped_timeout == start.gaps_skipped_timeout
    jumped = net.local.statistics().sparse_jumps
    assert 0 < jumped < 0.2 * 1_000_000 * 2.0 / SECOND, jumped  # it still jumped, some
    second = sum(size for at, size in net.delivered if size == SECOND and 3.0 <= at < 4.0)
    assert 0.9 * offered < second < 1.1 * offered, second
