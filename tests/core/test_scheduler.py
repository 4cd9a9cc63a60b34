"""Schedulers: exact choices, weighted shares, hash stickiness and minimal movement."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from braid.core.path import PathState
from braid.core.scheduler import SCHEDULERS, get_scheduler
from braid.core.scheduler.earliest_arrival import (
    EarliestArrivalScheduler,
    path_delay,
    queue_delay,
)
from braid.core.scheduler.hash import HashScheduler, rendezvous_score
from braid.core.scheduler.round_robin import RoundRobinScheduler
from braid.core.scheduler.weighted import WeightedScheduler


def paths(*ids: int, rates: dict[int, int] | None = None) -> tuple[PathState, ...]:
    return tuple(PathState(i, rate_bps=(rates or {}).get(i), now=0.0) for i in ids)


def test_registry() -> None:
    assert SCHEDULERS == ("earliest-arrival", "hash", "redundant", "round-robin", "weighted")
    for name in SCHEDULERS:
        first, second = get_scheduler(name), get_scheduler(name)
        assert first.name == name
        assert first is not second
    with pytest.raises(
        ValueError, match="valid: earliest-arrival, hash, redundant, round-robin, weighted"
    ):
        get_scheduler("fastest")


@pytest.mark.parametrize("name", SCHEDULERS)
def test_no_paths_gives_none(name: str) -> None:
    assert get_scheduler(name).select_path((), 100, 0, now=0.0) is None
    assert get_scheduler(name).select_path([], 100, 0, now=0.0) is None


def test_round_robin_exact_turns() -> None:
    scheduler = RoundRobinScheduler()
    three = paths(0, 1, 2)
    chosen = [scheduler.select_path(three, 100, 0, now=0.0) for _ in range(7)]
    assert [p.path_id for p in chosen if p] == [0, 1, 2, 0, 1, 2, 0]
    two = three[:2]  # path 2 left: the turn carries on
    chosen = [scheduler.select_path(two, 100, 0, now=0.0) for _ in range(4)]
    assert [p.path_id for p in chosen if p] == [1, 0, 1, 0]


def test_weighted_equal_without_rates_is_alternating() -> None:
    scheduler = WeightedScheduler()
    two = paths(3, 5)
    chosen = [scheduler.select_path(two, 1000, 0, now=0.0) for _ in range(6)]
    assert [p.path_id for p in chosen if p] == [3, 5, 3, 5, 3, 5]


def test_weighted_exact_sequence_one_to_three() -> None:
    scheduler = WeightedScheduler()
    two = paths(0, 1, rates={0: 10_000_000, 1: 30_000_000})
    chosen = [scheduler.select_path(two, 1000, 0, now=0.0) for _ in range(8)]
    assert [p.path_id for p in chosen if p] == [1, 1, 0, 1, 1, 1, 0, 1]


def test_weighted_shares_bytes_by_rate_with_mixed_sizes() -> None:
    rng = random.Random(7)
    scheduler = WeightedScheduler()
    rates = {0: 10_000_000, 1: 20_000_000, 2: 50_000_000, 3: 20_000_000}
    group = paths(0, 1, 2, 3, rates=rates)
    carried: Counter[int] = Counter()
    for _ in range(20_000):
        size = rng.choice((60, 576, 1400, 1500))
        path = scheduler.select_path(group, size, rng.randrange(65536), now=0.0)
        assert path is not None
        carried[path.path_id] += size
    total = sum(carried.values())
    for path_id, rate in rates.items():
        # Within one packet of the exact share.
        assert abs(carried[path_id] - total * rate / 100_000_000) <= 1500, (path_id, carried)


def test_weighted_unknown_rate_gets_mean_and_newcomer_does_not_burst() -> None:
    scheduler = WeightedScheduler()
    group = paths(0, 1, 2, rates={0: 10_000_000, 1: 30_000_000})  # 2 unknown: weighs 20M
    counts = Counter(
        p.path_id for p in (scheduler.select_path(group, 1000, 0, now=0.0) for _ in range(600)) if p
    )
    assert counts == {0: 100, 1: 300, 2: 200}
    # A fourth path joins after 600 packets: it gets its share from now on, no catch-up burst.
    bigger = (*group, PathState(9, now=0.0))
    first = [scheduler.select_path(bigger, 1000, 0, now=0.0) for _ in range(8)]
    assert sum(1 for p in first if p and p.path_id == 9) <= 3


def test_hash_is_sticky_and_uses_all_paths() -> None:
    scheduler = HashScheduler()
    group = paths(0, 1, 2)
    placement = {}
    for bucket in range(3000):
        path = scheduler.select_path(group, 100, bucket, now=0.0)
        assert path is not None
        placement[bucket] = path.path_id
    for bucket in range(3000):  # the same answer every time, also from a new instance
        assert scheduler.select_path(group, 1400, bucket, now=1.0) is group[placement[bucket]]
        assert (
            HashScheduler().select_path(list(group), 1, bucket, now=0.0) is group[placement[bucket]]
        )
    counts = Counter(placement.values())
    assert all(850 < counts[i] < 1150 for i in range(3)), counts


def test_hash_minimal_movement_when_paths_change() -> None:
    scheduler = HashScheduler()
    group = paths(0, 1, 2, 3)
    before = {b: scheduler.select_path(group, 100, b, now=0.0).path_id for b in range(4000)}  # type: ignore[union-attr]
    without_two = tuple(p for p in group if p.path_id != 2)
    after = {b: scheduler.select_path(without_two, 100, b, now=0.0).path_id for b in range(4000)}  # type: ignore[union-attr]
    for bucket in range(4000):
        if before[bucket] != 2:
            assert after[bucket] == before[bucket]  # only path 2's buckets moved
    # Path 2 returns: exactly its old buckets go back to it, nothing else moves.
    again = {b: scheduler.select_path(group, 100, b, now=0.0).path_id for b in range(4000)}  # type: ignore[union-attr]
    assert again == before


def test_hash_weights_follow_rates() -> None:
    scheduler = HashScheduler()
    group = paths(0, 1, rates={0: 10_000_000, 1: 30_000_000})
    counts = Counter(scheduler.select_path(group, 1, b, now=0.0).path_id for b in range(8000))  # type: ignore[union-attr]
    assert 1800 < counts[0] < 2200, counts


def test_hash_against_naive_rendezvous() -> None:
    rng = random.Random(3)
    scheduler = HashScheduler()
    for _ in range(50):
        ids = sorted(rng.sample(range(255), rng.randint(1, 6)))
        group = paths(*ids)
        for _ in range(50):
            bucket = rng.randrange(65536)
            naive = max(ids, key=lambda i: rendezvous_score(bucket, i, 1.0))
            chosen = scheduler.select_path(group, 100, bucket, now=0.0)
            assert chosen is not None and chosen.path_id == naive


_PATH_STATE = st.tuples(
    st.one_of(st.none(), st.floats(0.001, 0.3)),  # min RTT sample (None: no sample yet)
    st.one_of(st.none(), st.floats(0.001, 0.5)),  # smoothed RTT
    st.floats(0.0, 0.1),  # hold (delay_floor)
    st.integers(0, 200_000),  # bytes in braid's queue
    st.floats(-0.05, 0.05),  # next release, relative to now
    st.integers(0, 2_000_000),  # bytes in flight
    st.integers(1, 100).map(lambda m: m * 1_000_000),  # rate, bit/s
    st.floats(1.0, 1.2),  # wire factor
)


@settings(max_examples=300, deadline=None)
@given(
    states=st.lists(_PATH_STATE, min_size=2, max_size=5),
    size=st.integers(40, 1500),
    head=st.booleans(),
    hold=st.booleans(),
)
def test_earliest_arrival_matches_its_definition(
    states: list[tuple[float | None, float | None, float, int, float, int, int, float]],
    size: int,
    head: bool,
    hold: bool,
) -> None:
    # The scheduler's one-pass loop against the rule written with path_delay/queue_delay:
    # the earliest expected arrival among the paths within delay_cutoff of the fastest,
    # and the far ones too only while every near one has a full_after backlog.
    now = 10.0
    built = []
    for index, (low, srtt, held, queued, release, inflight, rate, factor) in enumerate(states):
        path = PathState(index, rate_bps=rate, now=0.0)
        if low is not None:
            path.min_rtt.update(low, now)
        path.srtt = srtt
        path.hold = held
        path.queued_bytes = queued
        path.next_release = now + release
        path.tracker.inflight = inflight
        path.wire_factor = factor
        built.append(path)
    scheduler = EarliestArrivalScheduler()
    chosen = scheduler.select_path(built, size, 0, now=now, head=head, hold=hold)

    def delay(p: PathState) -> float:
        return path_delay(p) + (p.hold if hold and not head else 0.0)

    fastest = min(delay(p) for p in built)
    near = [p for p in built if delay(p) <= fastest + scheduler.delay_cutoff]
    candidates = near
    if len(near) < len(built) and all(
        queue_delay(p, size, now, head=head) >= scheduler.full_after for p in near
    ):
        candidates = built
    best = min(queue_delay(p, size, now, head=head) + delay(p) for p in candidates)
    assert chosen is not None and chosen in candidates
    assert queue_delay(chosen, size, now, head=head) + delay(chosen) == pytest.approx(best)
