# Sliding replay window over unwrapped integer sequence numbers (RFC 6479 style).
#
# Invariants:
# - A sequence number is accepted at most once: `check_and_update(s)` is True only for an
#   `s` never accepted before that is newer than `highest - size` (the window trails the
#   highest accepted number by exactly `size` numbers, `highest` included).
# - The bitmap is a ring of 64-bit blocks; advancing clears only the blocks the window
#   slides over (at most the whole ring), so every operation is O(1) amortised and a big
#   jump costs at most one pass over the ring.
# - Sequence numbers are plain Python ints (unwrapped by the caller; may be negative).

from __future__ import annotations

from typing import Final

_BLOCK_BITS: Final = 64
_BLOCK_SHIFT: Final = 6
_BIT_MASK: Final = _BLOCK_BITS - 1


class ReplayWindow:
    """Accepts each sequence number once, within `size` of the highest accepted."""

    __slots__ = ("_blocks", "_highest", "_ring", "_size")

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"replay window size must be >= 1, got {size}")
        self._size = size
        self._blocks = (size + _BLOCK_BITS - 1) // _BLOCK_BITS + 1
        self._ring = [0] * self._blocks
        self._highest: int | None = None

    @property
    def size(self) -> int:
        """How many sequence numbers (ending at the highest) the window remembers."""
        return self._size

    @property
    def highest(self) -> int | None:
        """The highest sequence number accepted so far (None before the first)."""
        return self._highest

    def reset(self) -> None:
        """Forget everything (as if newly created)."""
        self._ring = [0] * self._blocks
        self._highest = None

    def check(self, seq: int) -> bool:
        """True if `seq` would be accepted (new and not too old); changes nothing."""
        highest = self._highest
        if highest is None or seq > highest:
            return True
        if highest - seq >= self._size:
            return False
        return not (self._ring[(seq >> _BLOCK_SHIFT) % self._blocks] >> (seq & _BIT_MASK)) & 1

    def update(self, seq: int) -> None:
        """Mark `seq` as seen, sliding the window forward if it is the new highest."""
        self.check_and_update(seq)

    def check_and_update(self, seq: int) -> bool:
        """Accept `seq` if it is new and inside the window (and record it); else False."""
        highest = self._highest
        ring = self._ring
        blocks = self._blocks
        if highest is None or seq > highest:
            if highest is None:
                ring[:] = [0] * blocks
            else:
                current = highest >> _BLOCK_SHIFT
                target = seq >> _BLOCK_SHIFT
                if target - current >= blocks:
                    ring[:] = [0] * blocks
                else:
                    for block in range(current + 1, target + 1):
                        ring[block % blocks] = 0
            self._highest = seq
        elif highest - seq >= self._size:
            return False
        index = (seq >> _BLOCK_SHIFT) % blocks
        bit = 1 << (seq & _BIT_MASK)
        old = ring[index]
        if old & bit:
            return False
        ring[index] = old | bit
        return True
