"""The reorder buffer: exact releases and deadlines, and a differential test against a
naive reference model under seeded random input."""

from __future__ import annotations

import math
import random
from collections import defaultdict

import pytest

from braid.core.reorder import ReorderBuffer
from braid.core.wire import unwrap32


def pkt(bucket: int, seq: int) -> bytes:
    return f"{bucket}:{seq}".encode()


def test_in_order_released_at_once() -> None:
    buffer = ReorderBuffer(timeout=0.1)
    for seq in range(3):
        buffer.push(7, seq, seq, pkt(7, seq), now=0.0)
        buffer.push(8, seq, 10 + seq, pkt(8, seq), now=0.0)
    assert buffer.pop_ready(now=0.0) == [pkt(b, s) for s in range(3) for b in (7, 8)]
    assert buffer.deadline() is None
    assert buffer.pop_ready(now=1.0) == []


def test_gap_filled_releases_run_and_other_buckets_flow() -> None:
    buffer = ReorderBuffer(timeout=0.1)
    buffer.push(1, 0, 0, pkt(1, 0), now=0.0)
    buffer.push(1, 2, 2, pkt(1, 2), now=0.01)
    buffer.push(1, 3, 3, pkt(1, 3), now=0.02)
    buffer.push(2, 0, 4, pkt(2, 0), now=0.03)  # bucket 2 is not stalled by bucket 1's gap
    assert buffer.pop_ready(now=0.03) == [pkt(1, 0), pkt(2, 0)]
    assert buffer.deadline() == pytest.approx(0.11)
    assert buffer.buffered_packets == 2
    buffer.push(1, 1, 1, pkt(1, 1), now=0.04)
    assert buffer.pop_ready(now=0.04) == [pkt(1, 1), pkt(1, 2), pkt(1, 3)]
    assert buffer.deadline() is None
    stats = buffer.statistics()
    assert (stats.buffered_packets, stats.max_buffered_packets, stats.released) == (0, 2, 5)
    assert stats.gaps_skipped_timeout == stats.gaps_skipped_proof == stats.late == 0


def test_each_packet_comes_back_with_its_own_tag() -> None:
    """The tags (the session's delivery times), session seqs and buckets follow their
    packets through the buffer: released at once, held and released in a run, skipped past
    by a timeout, late. Along a run tags do not decrease: a packet the session would
    deliver at once (tag -inf) does not overtake the earlier one of its flow it holds."""
    with pytest.raises(ValueError, match="tagged=True"):
        ReorderBuffer().pop_ready_tagged(now=0.0)
    buffer = ReorderBuffer(timeout=0.1, tagged=True)
    buffer.push(1, 0, 0, pkt(1, 0), now=0.0, tag=10.0)
    buffer.push(1, 2, 2, pkt(1, 2), now=0.01, tag=12.0)
    buffer.push(2, 0, 3, pkt(2, 0), now=0.01, tag=20.0)
    assert buffer.pop_ready_tagged(now=0.01) == (
        [pkt(1, 0), pkt(2, 0)],
        [10.0, 20.0],
        [0, 3],
        [1, 2],
    )
    buffer.push(1, 3, 4, pkt(1, 3), now=0.02, tag=-math.inf)
    buffer.push(1, 1, 1, pkt(1, 1), now=0.03, tag=11.0)
    assert buffer.pop_ready_tagged(now=0.03) == (
        [pkt(1, 1), pkt(1, 2), pkt(1, 3)],
        [11.0, 12.0, 12.0],
        [1, 2, 4],
        [1, 1, 1],
    )
    buffer.push(1, 5, 6, pkt(1, 5), now=0.04, tag=15.0)
    assert buffer.pop_ready_tagged(now=0.2) == ([pkt(1, 5)], [15.0], [6], [1])  # timed out
    buffer.push(1, 4, 5, pkt(1, 4), now=0.21, tag=14.0)  # late
    buffer.push(3, 0, 7, pkt(3, 0), now=0.21)  # no tag: 0.0
    assert buffer.pop_ready(now=0.21) == [pkt(1, 4), pkt(3, 0)]  # (tags dropped with them)
    assert buffer.pop_ready_tagged(now=0.3) == ([], [], [], [])


def test_timeout_skips_gap_at_exact_deadline() -> None:
    buffer = ReorderBuffer(timeout=0.05)
    buffer.push(1, 1, 1, pkt(1, 1), now=1.0)
    buffer.push(1, 3, 3, pkt(1, 3), now=1.02)
    assert buffer.pop_ready(now=1.0) == []
    deadline = buffer.deadline()
    assert deadline == 1.0 + 0.05
    assert buffer.pop_ready(now=math.nextafter(deadline, 0)) == []
    # Packet 1 times out: gap {0} skipped; packet 3 waits for 2 until its own deadline.
    assert buffer.pop_ready(now=deadline) == [pkt(1, 1)]
    assert buffer.deadline() == 1.02 + 0.05
    assert buffer.pop_ready(now=1.07) == [pkt(1, 3)]
    stats = buffer.statistics()
    assert (stats.gaps_skipped_timeout, stats.packets_skipped) == (2, 2)
    # The skipped packets arrive late: delivered at once, counted.
    buffer.push(1, 0, 0, pkt(1, 0), now=1.1)
    buffer.push(1, 2, 2, pkt(1, 2), now=1.1)
    assert buffer.pop_ready(now=1.1) == [pkt(1, 0), pkt(1, 2)]
    assert buffer.statistics().late == 2


def test_timeout_change_moves_deadline() -> None:
    buffer = ReorderBuffer(timeout=0.3)
    buffer.push(0, 5, 5, b"x", now=2.0)
    assert buffer.deadline() == 2.3
    buffer.timeout = 0.01
    assert buffer.deadline() == 2.0 + 0.01
    assert buffer.pop_ready(now=2.01) == [b"x"]


def test_gap_released_by_proof_when_every_live_path_passed_it() -> None:
    buffer = ReorderBuffer(timeout=1.0)
    buffer.set_live_paths([0, 1])
    buffer.on_path_progress(0, 10)
    buffer.push(4, 1, 10, pkt(4, 1), now=0.0)  # bucket seq 0 (session seq < 10) missing
    buffer.on_path_progress(1, 9)
    assert buffer.pop_ready(now=0.0) == []  # path 1 may still carry it
    buffer.on_path_progress(1, 10)
    assert buffer.pop_ready(now=0.0) == [pkt(4, 1)]
    assert buffer.statistics().gaps_skipped_proof == 1
    # A head whose session seq is already passed by every live path is released at push.
    buffer.push(4, 3, 8, pkt(4, 3), now=0.1)
    assert buffer.pop_ready(now=0.1) == [pkt(4, 3)]
    assert buffer.statistics().gaps_skipped_proof == 2


def test_proof_waits_for_paths_without_progress_and_live_set_changes() -> None:
    buffer = ReorderBuffer(timeout=1.0)
    buffer.set_live_paths([0, 1])
    buffer.on_path_progress(0, 20)
    buffer.push(1, 1, 20, pkt(1, 1), now=0.0)
    assert buffer.pop_ready(now=0.0) == []  # path 1 never delivered anything yet
    buffer.set_live_paths([0])  # path 1 is down: proof from path 0 alone
    assert buffer.pop_ready(now=0.0) == [pkt(1, 1)]
    buffer.set_live_paths([0, 1])
    buffer.push(1, 3, 21, pkt(1, 3), now=0.0)
    buffer.on_path_progress(0, 21)
    buffer.on_path_progress(1, 30)
    assert buffer.pop_ready(now=0.0) == [pkt(1, 3)]
    buffer.push(1, 5, 31, pkt(1, 5), now=0.0)
    buffer.on_path_progress(0, 31)
    buffer.forget_path(1)
    assert buffer.pop_ready(now=0.0) == [pkt(1, 5)]
    buffer.set_live_paths([])
    buffer.push(1, 7, 32, pkt(1, 7), now=0.0)
    buffer.on_path_progress(0, 40)
    assert buffer.pop_ready(now=0.0) == []  # no live path: only the timeout releases


def test_proof_releases_several_buckets_in_session_order() -> None:
    buffer = ReorderBuffer(timeout=1.0)
    buffer.set_live_paths([0])
    buffer.push(2, 1, 7, pkt(2, 1), now=0.0)
    buffer.push(1, 1, 5, pkt(1, 1), now=0.0)
    buffer.push(1, 2, 6, pkt(1, 2), now=0.0)
    buffer.push(3, 2, 9, pkt(3, 2), now=0.0)
    buffer.on_path_progress(0, 7)
    assert buffer.pop_ready(now=0.0) == [pkt(1, 1), pkt(1, 2), pkt(2, 1)]
    buffer.on_path_progress(0, 100)
    assert buffer.pop_ready(now=0.0) == [pkt(3, 2)]
    assert buffer.statistics().packets_skipped == 4


def test_duplicate_of_held_packet_dropped() -> None:
    buffer = ReorderBuffer(timeout=0.1)
    buffer.push(1, 2, 2, b"a", now=0.0)
    buffer.push(1, 2, 2, b"a", now=0.0)
    assert buffer.statistics().duplicates == 1
    assert buffer.pop_ready(now=0.1) == [b"a"]


def test_overflow_forces_oldest_gap_out() -> None:
    buffer = ReorderBuffer(timeout=10.0, limit_packets=3)
    buffer.push(1, 1, 1, pkt(1, 1), now=0.0)
    buffer.push(2, 1, 2, pkt(2, 1), now=0.1)
    buffer.push(1, 3, 3, pkt(1, 3), now=0.2)
    assert buffer.pop_ready(now=0.2) == []
    buffer.push(3, 1, 4, pkt(3, 1), now=0.3)  # 4 held > 3: bucket 1's first gap goes
    assert buffer.pop_ready(now=0.3) == [pkt(1, 1)]
    stats = buffer.statistics()
    assert (stats.gaps_skipped_overflow, stats.buffered_packets, stats.max_buffered_packets) == (
        1,
        3,
        4,
    )
    bytes_limited = ReorderBuffer(timeout=10.0, limit_bytes=10)
    bytes_limited.push(1, 1, 1, b"123456", now=0.0)
    bytes_limited.push(2, 1, 2, b"123456", now=0.0)
    assert bytes_limited.pop_ready(now=0.0) == [b"123456"]
    assert bytes_limited.statistics().buffered_bytes == 6


def test_sequence_numbers_wrap() -> None:
    buffer = ReorderBuffer(timeout=0.01)
    buffer.push(1, 0x7FFFFFF0, 1, b"a", now=0.0)
    assert buffer.pop_ready(now=0.01) == [b"a"]
    buffer.push(1, 0xFFFFFFF0, 2, b"b", now=0.02)
    assert buffer.pop_ready(now=0.03) == [b"b"]
    released = []
    for seq in [*range(0xFFFFFFF1, 0x100000000), 0, 1, 2]:
        buffer.push(1, seq & 0xFFFFFFFF, 3, pkt(1, seq & 0xFFFFFFFF), now=0.04)
        released += buffer.pop_ready(now=0.04)
    assert len(released) == 18
    assert buffer.statistics().late == 0


# -- differential test ---------------------------------------------------------------------


class NaiveReorder:
    """The reorder semantics written as plainly as possible (O(n) scans everywhere)."""

    def __init__(self, timeout: float, limit_packets: int, limit_bytes: int) -> None:
        self.timeout = timeout
        self.limit_packets = limit_packets
        self.limit_bytes = limit_bytes
        self.expected: dict[int, int] = defaultdict(int)
        self.held: dict[int, dict[int, tuple[int, bytes, float, int]]] = defaultdict(dict)
        self.ready: list[bytes] = []
        self.progress: dict[int, int] = {}
        self.live: set[int] = set()
        self.order = 0
        self.counts: dict[str, int] = defaultdict(int)

    def threshold(self) -> float:
        if not self.live:
            return -math.inf
        return min(self.progress.get(p, -math.inf) for p in self.live)

    def all_held(self) -> list[tuple[float, int, int, int]]:
        return [
            (arrival, order, bucket, seq)
            for bucket, held in self.held.items()
            for seq, (_, _, arrival, order) in held.items()
        ]

    def run(self, bucket: int) -> None:
        while self.expected[bucket] in self.held[bucket]:
            self.ready.append(self.held[bucket].pop(self.expected[bucket])[1])
            self.counts["released"] += 1
            self.expected[bucket] += 1

    def skip_gap(self, bucket: int) -> None:
        head = min(self.held[bucket])
        self.counts["packets_skipped"] += head - self.expected[bucket]
        self.expected[bucket] = head
        self.run(bucket)

    def closure(self) -> None:
        while True:
            threshold = self.threshold()
            heads = [
                (held[min(held)][0], bucket, min(held))
                for bucket, held in self.held.items()
                if held and held[min(held)][0] <= threshold
            ]
            if not heads:
                return
            _, bucket, _ = min(heads)
            self.counts["proof"] += 1
            self.skip_gap(bucket)

    def skip_through(self, bucket: int, seq: int, kind: str) -> None:
        while self.expected[bucket] <= seq:
            self.counts[kind] += 1
            self.skip_gap(bucket)
        self.closure()

    def buffered(self) -> tuple[int, int]:
        held = [entry for bucket in self.held.values() for entry in bucket.values()]
        return len(held), sum(len(entry[1]) for entry in held)

    def push(self, bucket: int, wire_seq: int, session_seq: int, packet: bytes, now: float) -> None:
        expected = self.expected[bucket]
        seq = unwrap32(wire_seq, expected)
        if seq == expected:
            self.ready.append(packet)
            self.counts["released"] += 1
            self.expected[bucket] += 1
            self.run(bucket)
        elif seq < expected:
            self.ready.append(packet)
            self.counts["released"] += 1
            self.counts["late"] += 1
        elif seq in self.held[bucket]:
            self.counts["duplicates"] += 1
            return
        else:
            self.held[bucket][seq] = (session_seq, packet, now, self.order)
            self.order += 1
        self.closure()
        while True:
            count, size = self.buffered()
            if count <= self.limit_packets and size <= self.limit_bytes:
                break
            _, _, oldest_bucket, oldest_seq = min(self.all_held())
            self.skip_through(oldest_bucket, oldest_seq, "overflow")

    def on_path_progress(self, path_id: int, session_seq: int) -> None:
        self.progress[path_id] = max(self.progress.get(path_id, session_seq), session_seq)
        self.closure()

    def set_live_paths(self, live: set[int]) -> None:
        self.live = set(live)
        self.closure()

    def pop_ready(self, now: float) -> list[bytes]:
        while True:
            expired = [h for h in self.all_held() if h[0] + self.timeout <= now]
            if not expired:
                break
            _, _, bucket, seq = min(expired)
            self.skip_through(bucket, seq, "timeout")
        ready, self.ready = self.ready, []
        return ready

    def deadline(self) -> float | None:
        held = self.all_held()
        return min(held)[0] + self.timeout if held else None


@pytest.mark.parametrize("seed", range(12))
def test_differential_against_naive_model(seed: int) -> None:
    rng = random.Random(seed)
    timeout = rng.choice((0.005, 0.02, 0.1))
    limit_packets = rng.choice((5, 20, 4096))
    limit_bytes = rng.choice((200, 10_000, 10**9))
    fast = ReorderBuffer(timeout=timeout, limit_packets=limit_packets, limit_bytes=limit_bytes)
    naive = NaiveReorder(timeout, limit_packets, limit_bytes)
    paths = [0, 1, 2]
    delays = {p: rng.uniform(0.0, 0.05) for p in paths}
    buckets = rng.randint(1, 6)
    bucket_seqs = [rng.choice((0, 0, 0x7FFFFFFF)) for _ in range(buckets)]  # some start far off
    in_flight: list[tuple[float, int, int, int, int, bytes]] = []
    now = 0.0
    session_seq = 0
    try:
        for step in range(1500):
            now += rng.expovariate(2000)
            roll = rng.random()
            if roll < 0.5:  # send a packet on a random path; some are lost, some duplicated
                bucket = rng.randrange(buckets)
                wire_seq = bucket_seqs[bucket] & 0xFFFFFFFF
                bucket_seqs[bucket] += 1
                path = rng.choice(paths)
                packet = f"{bucket}/{wire_seq}/{session_seq}".encode() * rng.randint(1, 3)
                if rng.random() > 0.1:
                    arrival = now + delays[path] + rng.uniform(0, 0.01)
                    in_flight.append((arrival, path, bucket, wire_seq, session_seq, packet))
                    if rng.random() < 0.03:
                        in_flight.append(
                            (arrival + 0.001, path, bucket, wire_seq, session_seq, packet)
                        )
                session_seq += 1
            elif roll < 0.52:
                live = {p for p in paths if rng.random() < 0.8}
                fast.set_live_paths(live)
                naive.set_live_paths(live)
            elif roll < 0.53:
                fast.timeout = naive.timeout = rng.choice((0.001, 0.01, 0.05))
            in_flight.sort()
            while in_flight and in_flight[0][0] <= now:
                _, path, bucket, wire_seq, sseq, packet = in_flight.pop(0)
                fast.on_path_progress(path, sseq)
                naive.on_path_progress(path, sseq)
                fast.push(bucket, wire_seq, sseq, packet, now=now)
                naive.push(bucket, wire_seq, sseq, packet, now)
            if rng.random() < 0.3:
                assert fast.deadline() == naive.deadline(), step
                assert fast.pop_ready(now=now) == naive.pop_ready(now), step
        now += 1.0
        assert fast.pop_ready(now=now) == naive.pop_ready(now)
        assert fast.deadline() is None and naive.deadline() is None
        stats = fast.statistics()
        assert stats.released == naive.counts["released"]
        assert stats.late == naive.counts["late"]
        assert stats.duplicates == naive.counts["duplicates"]
        assert stats.gaps_skipped_proof == naive.counts["proof"]
        assert stats.gaps_skipped_timeout == naive.counts["timeout"]
        assert stats.gaps_skipped_overflow == naive.counts["overflow"]
        assert stats.packets_skipped == naive.counts["packets_skipped"]
        assert stats.buffered_packets == 0
        assert stats.gaps_skipped_proof > 0 and stats.gaps_skipped_timeout > 0
    except AssertionError:
        print(f"differential reorder test failed with seed={seed}")
        raise


def test_untag_lowers_the_tags_of_one_flow_still_in_the_buffer() -> None:
    buffer = ReorderBuffer(timeout=1.0, tagged=True)
    buffer.push(1, 1, 1, pkt(1, 1), now=0.0, tag=5.0)  # held: waits for bucket seq 0
    buffer.push(2, 1, 3, pkt(2, 1), now=0.0, tag=6.0)  # another flow, held
    buffer.push(3, 0, 4, pkt(3, 0), now=0.0, tag=7.0)  # released, not yet popped
    buffer.push(3, 1, 5, pkt(3, 1), now=0.0, tag=-math.inf)  # (not held by the session)
    buffer.untag(1)
    buffer.untag(3)
    buffer.push(1, 0, 0, pkt(1, 0), now=0.0, tag=-math.inf)
    buffer.push(2, 0, 2, pkt(2, 0), now=0.0, tag=4.0)
    ready, tags, _, buckets = buffer.pop_ready_tagged(now=0.0)
    assert list(zip(buckets, tags, strict=True)) == [
        (3, 0.0),
        (3, -math.inf),
        (1, -math.inf),
        (1, 0.0),  # untagged: 5.0 -> 0.0
        (2, 4.0),
        (2, 6.0),  # another flow keeps its tag
    ]
    assert len(ready) == 6


def test_proof_cap_and_long_timeout_hold_patient_buckets_only() -> None:
    """With NACKs the session caps proofs below a packet it awaits and lengthens the
    timeout to cover the resend: a TCP flow waits for it. An impatient bucket (a call's
    audio) is proven past the cap and times out after the shorter `impatient_timeout`."""
    buffer = ReorderBuffer(timeout=1.0)
    buffer.impatient_timeout = 0.05
    buffer.set_live_paths([0, 1])
    buffer.set_proof_cap(1)  # session seq 1 was NACKed
    buffer.push(1, 0, 0, pkt(1, 0), now=0.0)
    buffer.push(1, 2, 2, pkt(1, 2), now=0.0)  # patient: bucket seq 1 is missing
    buffer.push(2, 0, 3, pkt(2, 0), now=0.0, patient=False)
    buffer.push(2, 2, 5, pkt(2, 2), now=0.0, patient=False)  # impatient, same kind of gap
    buffer.push(3, 1, 20, pkt(3, 1), now=0.01, patient=False)  # no path has passed it
    buffer.on_path_progress(0, 10)
    buffer.on_path_progress(1, 10)  # every path passed all of them
    assert buffer.pop_ready(now=0.01) == [pkt(1, 0), pkt(2, 0), pkt(2, 2)]
    assert buffer.deadline() == pytest.approx(0.06)  # bucket 3's packet
    assert buffer.pop_ready(now=0.061) == [pkt(3, 1)]
    assert buffer.deadline() == pytest.approx(1.0)  # bucket 1 waits for the resend
    buffer.push(1, 1, 1, pkt(1, 1), now=0.08)
    assert buffer.pop_ready(now=0.08) == [pkt(1, 1), pkt(1, 2)]
    stats = buffer.statistics()
    assert (stats.gaps_skipped_proof, stats.gaps_skipped_timeout, stats.late) == (1, 1, 0)
    # Lifting the cap proves a patient gap as before.
    buffer.push(1, 4, 8, pkt(1, 4), now=0.1)
    assert buffer.pop_ready(now=0.1) == []
    buffer.set_proof_cap(None)
    assert buffer.pop_ready(now=0.1) == [pkt(1, 4)]
