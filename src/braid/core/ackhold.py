"""Delay equalization by acknowledgements (`equalize = "ack"`).

A TCP sender sizes its window by the round trips it measures: BBR keeps twice its rate
times the *smallest* round trip of the last 10 s in flight, and CUBIC's slow start ends
once a round trip grows by a few milliseconds. Through paths of unequal delay a flow's
first packets take the fastest path, so its smallest round trip is that path's, while in
bulk the in-order egress gives every packet the slowest used path's delay: BBR's window
then cannot fill the slower paths (56 % of four links of 5 to 40 ms one way) until its
first PROBE_RTT, and CUBIC leaves slow start early.

"tcp" holds every data segment at the egress to the slowest path's delay, which also
delays every request and response. "ack" holds the *acknowledgements* instead: the egress
notes, for each TCP segment that arrives, a time between its arrival and when it would
have arrived over the slowest usable path (`on_data`: `ACK_HOLD_SHARE` of the way); the
same portal's ingress holds the receiver's acknowledgement of that segment until then
(`hold`). The sender's round trips are longer from its first sample, but the data reaches
the receiver as early as it can. A SYN-ACK is held like an acknowledgement of its SYN
(the initiator's first sample is the handshake's); so is a segment of a connection
behind its held acknowledgements (order).

The cost: a connection's handshake and each round trip in which the sender waits for
acknowledgements (slow start, Nagle) take half the paths' delay spread more.

Sans-I/O: `on_data` at the egress (a segment and the time its acknowledgement may leave),
`hold` at the ingress (True: the packet is kept; False: send it now), `due` /
`release` for the timer.
"""

from __future__ import annotations

import heapq
import struct
from collections import deque
from typing import Final

FLOW_LIMIT: Final = 4096
"""Connections whose segments are remembered (beyond, one with nothing noted for `STALE`
goes first, else the oldest)."""
SEGMENT_LIMIT: Final = 4096
"""Segments remembered per connection (a window of 5.5 MB of 1348-byte segments)."""
STALE: Final = 1.0
"""A segment due this many seconds ago is forgotten (its acknowledgement, if it comes
now, is not held anyway)."""
_SCAN: Final = 64
PENDING_LIMIT: Final = 4096
"""Connections with held packets tracked for order before stale ones are swept."""
LINE_LIMIT: Final = 8192
"""Packets held at most (beyond, a packet goes at once: `overflow`)."""
EARLY: Final = 0.0005
"""A packet due within this many seconds goes at once."""

ACK_HOLD_SHARE: Final = 0.5
"""The share of the delay spread an acknowledgement is held for (applied by the session
to the time it gives `on_data`). Half is enough: BBR keeps twice its rate times its
smallest round trip in flight, and with a hold of half the one-way spread S, twice the
smallest round trip, 2 (d_fast + S / 2 + d_back) = d_fast + d_slow + 2 d_back, is at
least a segment's round trip over the slowest path, d_slow + d_back. A whole spread
gave the same throughput in the lab (four links of 5 to 40 ms, BBR both ways; 10 + 40
Mbit/s down) with twice the cost to short exchanges and a longer standing queue; 0.3
fell short over the four links (84-86 against 89-90 Mbit/s)."""

_HALF32: Final = 1 << 31
_MASK32: Final = (1 << 32) - 1
_U32: Final = struct.Struct("!I").unpack_from
_SYN: Final = 0x02
_FIN: Final = 0x01
_ACK: Final = 0x10


def _tcp(packet: bytes) -> int:
    """The TCP header's offset in an IPv4 packet (not a fragment) or an IPv6 packet with
    TCP next, or 0."""
    size = len(packet)
    if not size:
        return 0
    lead = packet[0]
    if lead >> 4 == 4:
        start = (lead & 0x0F) << 2
        if start < 20 or size < start + 20 or packet[9] != 6 or packet[6] & 0x3F or packet[7]:
            return 0
        return start
    if lead >> 4 == 6 and size >= 60 and packet[6] == 6:
        return 40
    return 0


def _connection(packet: bytes, start: int) -> bytes:
    """Source and destination addresses, then ports, of a packet `_tcp` found at `start`."""
    if start == 40:
        return packet[8:44]  # (IPv6: contiguous)
    if start == 20:
        return packet[12:24]  # (IPv4 without options: contiguous)
    return packet[12:20] + packet[start : start + 4]


def _reverse(connection: bytes) -> bytes:
    """The same connection seen from the other end."""
    half = (len(connection) - 4) // 2
    return connection[half : 2 * half] + connection[:half] + connection[-2:] + connection[-4:-2]


class AckHold:
    """Both halves of `equalize = "ack"` in one portal: the segments' due times noted at
    the egress, the acknowledgements held at the ingress."""

    def __init__(
        self,
        *,
        flow_limit: int = FLOW_LIMIT,
        segment_limit: int = SEGMENT_LIMIT,
        pending_limit: int = PENDING_LIMIT,
        line_limit: int = LINE_LIMIT,
    ) -> None:
        self._line_limit = line_limit
        self._flow_limit = flow_limit
        self._segment_limit = segment_limit
        self._pending_limit = pending_limit
        # connection (source, destination, ports of the segment) -> (end, due) in order
        self._segments: dict[bytes, deque[tuple[int, float]]] = {}
        # connection of a held packet -> the due time of its last held packet
        self._pending: dict[bytes, float] = {}
        self._line: list[tuple[float, int, bytes]] = []
        self._count = 0
        self.held = 0
        """Packets held (acknowledgements, SYN-ACKs and segments behind them)."""
        self.overflow = 0
        """Packets sent at once that were due later, because `line_limit` were held (the
        session counts them in `equalize_overflow`)."""

    def __len__(self) -> int:
        return len(self._line)

    def on_data(self, packet: bytes, due: float, now: float, *, synack: bool = False) -> None:
        """A TCP segment arrived at the egress at `now`; its acknowledgement may leave at
        `due` (the session gives `ACK_HOLD_SHARE` of the way to when the segment would
        have arrived over the slowest path). Only what occupies sequence space (data,
        SYN, FIN) is noted; a SYN-ACK only with `synack` (when both portals hold, the
        initiator's acknowledgement of it is not held: the SYN-ACK was; a portal that
        holds alone for a remembered pair, `BulkPairs`, holds it)."""
        start = _tcp(packet)
        if not start:
            return
        flags = packet[start + 13]
        length = len(packet) - start - ((packet[start + 12] >> 4) << 2)
        if flags & _FIN or flags & (_SYN | _ACK) == _SYN or (synack and flags & _SYN):
            length += 1
        if length <= 0:
            return
        key = _connection(packet, start)
        end = (_U32(packet, start + 4)[0] + length) & _MASK32
        flows = self._segments
        segments = flows.get(key)
        if segments is None:
            if len(flows) >= self._flow_limit:
                self._evict(now)
            segments = flows[key] = deque(maxlen=self._segment_limit)
        else:
            stale = now - STALE
            while segments and segments[0][1] < stale:
                segments.popleft()
        segments.append((end, due))

    def _evict(self, now: float) -> None:
        """Forget one connection: the first found with nothing due in the last `STALE`
        seconds among the oldest noted (the busy ones go to the end), else the oldest."""
        flows = self._segments
        stale = now - STALE
        for _ in range(min(_SCAN, len(flows))):
            key = next(iter(flows))
            segments = flows.pop(key)
            if not segments or segments[-1][1] < stale:
                return
            flows[key] = segments
        del flows[next(iter(flows))]

    def hold(self, packet: bytes, now: float) -> bool:
        """Whether the ingress keeps `packet` (to `release` it later) instead of sending it
        now: a pure acknowledgement or a SYN-ACK of a segment due later, or any packet of a
        connection with packets held before it."""
        start = _tcp(packet)
        if not start:
            return False
        flags = packet[start + 13]
        ack_only = (
            flags & _ACK
            and not flags & ~(_SYN | _ACK) & 0x3F
            and len(packet) == start + ((packet[start + 12] >> 4) << 2)
        )
        if not ack_only and not self._pending:
            return False  # (data with nothing held: the common case, nothing built)
        key = _connection(packet, start)
        last = self._pending.get(key)
        due = last if last is not None and last > now else 0.0
        if ack_only:
            segments = self._segments.get(_reverse(key))
            if segments:
                ack = _U32(packet, start + 8)[0]
                # Everything this acknowledges is done with; the last of it sets the time.
                while segments and (ack - segments[0][0]) & _MASK32 < _HALF32:
                    last = segments.popleft()[1]
                    if last > due:
                        due = last
        if due <= now + EARLY:
            return False
        if len(self._line) >= self._line_limit:
            self.overflow += 1
            return False
        pending = self._pending
        if len(pending) >= self._pending_limit and key not in pending:
            for old in [k for k, t in pending.items() if t <= now]:
                del pending[old]
        pending[key] = due
        self._count += 1
        heapq.heappush(self._line, (due, self._count, packet))
        self.held += 1
        return True

    def due(self) -> float | None:
        """When the next held packet is due (None: none held)."""
        return self._line[0][0] if self._line else None

    def release(self, now: float) -> list[bytes]:
        """The held packets due by `now`, in order (per connection, as they came)."""
        line = self._line
        out = []
        while line and line[0][0] <= now + EARLY:
            out.append(heapq.heappop(line)[2])
        if not line:
            self._pending.clear()
        return out
