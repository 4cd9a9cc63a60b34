"""The sliding replay window (RFC 6479 style), also reused for nonces by braid.core.keys."""

from __future__ import annotations

import random

import pytest

from braid.core.replay import ReplayWindow


def test_in_order_accepts_each_once() -> None:
    window = ReplayWindow(64)
    for seq in range(1000):
        assert window.check(seq)
        assert window.check_and_update(seq)
        assert not window.check(seq)
        assert not window.check_and_update(seq)
    assert window.highest == 999


def test_reordered_within_window() -> None:
    window = ReplayWindow(128)
    order = [5, 3, 4, 0, 1, 2, 10, 7, 9, 6, 8]
    for seq in order:
        assert window.check_and_update(seq), seq
    for seq in order:
        assert not window.check_and_update(seq), seq
    assert window.highest == 10


def test_window_edge_is_exact() -> None:
    window = ReplayWindow(100)
    assert window.check_and_update(1000)
    assert window.check(901)  # highest - 99: inside
    assert not window.check(900)  # highest - 100: too old
    assert window.check_and_update(901)
    assert not window.check_and_update(900)
    assert not window.check_and_update(-5)


def test_too_old_after_advance() -> None:
    window = ReplayWindow(64)
    window.update(10)
    window.update(100)
    assert not window.check(10)
    assert not window.check(36)  # 100 - 64
    assert window.check(37)


def test_big_jumps_clear_stale_bits() -> None:
    window = ReplayWindow(256)
    for seq in range(256):
        window.update(seq)
    window.update(10**9)
    # Numbers that share ring slots with old ones are new again inside the window.
    for seq in range(10**9 - 255, 10**9):
        assert window.check(seq), seq
    assert not window.check(10**9)
    window.update(10**9 + 300)  # a jump shorter than the ring
    assert window.check(10**9 + 100)
    assert not window.check(10**9 + 300)


def test_negative_and_first_number() -> None:
    window = ReplayWindow(64)
    assert window.highest is None
    assert window.check(-(2**40))
    assert window.check_and_update(-3)
    assert window.check_and_update(-1)
    assert window.check_and_update(-2)
    assert not window.check_and_update(-3)
    window.reset()
    assert window.check_and_update(-3)


def test_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="size"):
        ReplayWindow(0)
    assert ReplayWindow(1).size == 1


@pytest.mark.parametrize("size", [1, 63, 64, 65, 1000, 8192])
def test_against_reference_set(size: int) -> None:
    rng = random.Random(size)
    window = ReplayWindow(size)
    seen: set[int] = set()
    highest: int | None = None
    base = 0
    for _ in range(20_000):
        roll = rng.random()
        if roll < 0.01:
            base += rng.randint(size, 10 * size)  # big jump
        elif roll < 0.6:
            base += rng.randint(0, 3)
        seq = base - rng.randint(0, size + 5) if rng.random() < 0.4 else base
        expected = (highest is None or seq > highest or highest - seq < size) and seq not in seen
        assert window.check(seq) == expected, (size, seq, highest)
        assert window.check_and_update(seq) == expected
        if expected:
            seen.add(seq)
            highest = seq if highest is None else max(highest, seq)
