"""equalize = "ack" (braid.core.ackhold): the acknowledgement of a segment that arrived
early waits until the segment would have arrived over the slowest path; a SYN-ACK waits
for its SYN's time; later packets of a connection stay behind its held ones; anything
else goes at once; nothing grows without bound and no input raises."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from braid.core.ackhold import AckHold

SYN, ACK, FIN, PSH = 0x02, 0x10, 0x01, 0x08
CLIENT4, SERVER4 = bytes((10, 0, 0, 1)), bytes((10, 2, 0, 1))
CLIENT6, SERVER6 = (
    bytes.fromhex("fd00" + "00" * 13 + "01"),
    bytes.fromhex("fd02" + "00" * 13 + "01"),
)


def segment(
    source: bytes,
    destination: bytes,
    sport: int,
    dport: int,
    *,
    seq: int = 0,
    ack: int = 0,
    flags: int = ACK,
    data: int = 0,
) -> bytes:
    """An IPv4 or IPv6 (by the addresses' length) TCP segment with `data` bytes."""
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 0x50, flags, 65535, 0, 0)
    payload = tcp + bytes(data)
    if len(source) == 4:
        return (
            struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(payload), 0, 0x4000, 64, 6, 0)
            + source
            + destination
            + payload
        )
    return struct.pack("!IHBB", 0x60000000, len(payload), 6, 64) + source + destination + payload


def data4(seq: int, size: int = 1000, flags: int = ACK | PSH) -> bytes:
    return segment(SERVER4, CLIENT4, 443, 40000, seq=seq, flags=flags, data=size)


def ack4(ack: int, flags: int = ACK, data: int = 0) -> bytes:
    return segment(CLIENT4, SERVER4, 40000, 443, ack=ack, flags=flags, data=data)


def test_an_acknowledgement_waits_for_the_slow_paths_time_of_what_it_acknowledges() -> None:
    hold = AckHold()
    hold.on_data(data4(1000), due=1.040, now=1.005)  # came over the fast path at 1.005
    hold.on_data(data4(2000), due=1.041, now=1.006)
    assert hold.hold(ack4(2000), now=1.006)  # the first segment's time
    assert hold.due() == 1.040
    assert hold.release(1.030) == []
    assert hold.release(1.040) == [ack4(2000)]
    # A delayed acknowledgement of both waits for the later one's; one that acknowledges
    # nothing new (a duplicate) waits for nothing.
    hold.on_data(data4(3000), due=1.060, now=1.025)
    hold.on_data(data4(4000), due=1.061, now=1.026)
    assert hold.hold(ack4(5000), now=1.050) and hold.due() == 1.061
    assert hold.release(1.061) == [ack4(5000)]
    assert not hold.hold(ack4(5000), now=1.062)
    assert hold.held == 2 and len(hold) == 0


def test_a_segment_that_came_late_enough_is_acknowledged_at_once() -> None:
    hold = AckHold()
    hold.on_data(data4(1000), due=2.0, now=2.0)  # over the slowest path: due when it arrived
    assert not hold.hold(ack4(2000), now=2.0)
    assert not hold.hold(ack4(2000), now=2.0004)  # (within EARLY)
    assert hold.held == 0


def test_a_syn_ack_waits_for_its_syns_time_and_the_final_ack_does_not() -> None:
    local, remote = AckHold(), AckHold()
    # The client's SYN reached the remote portal over the fast path: due 30 ms later.
    remote.on_data(segment(CLIENT4, SERVER4, 40000, 443, seq=99, flags=SYN), due=1.035, now=1.000)
    syn_ack = segment(SERVER4, CLIENT4, 443, 40000, seq=499, ack=100, flags=SYN | ACK)
    assert remote.hold(syn_ack, now=1.006) and remote.due() == 1.035
    # At the local portal the SYN-ACK takes no sequence space worth holding for: the
    # server's first sample already includes the wait above.
    local.on_data(syn_ack, due=1.070, now=1.035)
    assert not local.hold(ack4(500), now=1.041)
    # Nor is a pure SYN (a new connection) ever held, nor a RST.
    assert not local.hold(segment(CLIENT4, SERVER4, 40001, 443, seq=7, flags=SYN), now=1.05)
    assert not local.hold(segment(CLIENT4, SERVER4, 40000, 443, ack=500, flags=0x04), now=1.05)


def test_a_portal_that_holds_alone_holds_the_final_ack_of_a_syn_ack_it_noted() -> None:
    """For a remembered pair (`BulkPairs`) only the download's egress holds: it notes the
    SYN-ACK (`synack=True`), so the client's final ACK waits and the server's first
    round trip sample covers the spread; the client's request behind it waits too."""
    local = AckHold()
    syn_ack = segment(SERVER4, CLIENT4, 443, 40000, seq=499, ack=100, flags=SYN | ACK)
    local.on_data(syn_ack, due=1.070, now=1.035, synack=True)
    assert local.hold(ack4(500), now=1.041) and local.due() == 1.070
    request = segment(CLIENT4, SERVER4, 40000, 443, seq=100, ack=500, flags=ACK | PSH, data=40)
    assert local.hold(request, now=1.042)
    assert local.release(now=1.069) == []
    assert local.release(now=1.070) == [ack4(500), request]


def test_later_packets_of_a_connection_stay_behind_its_held_ones() -> None:
    hold = AckHold()
    hold.on_data(data4(1000), due=1.040, now=1.005)
    assert hold.hold(ack4(2000), now=1.005)
    request = ack4(2000, flags=ACK | PSH, data=300)  # data of the same connection
    assert hold.hold(request, now=1.006)
    other = segment(CLIENT4, SERVER4, 40002, 443, ack=1, flags=ACK | PSH, data=100)
    assert not hold.hold(other, now=1.007)  # another connection goes at once
    assert hold.release(1.041) == [ack4(2000), request]
    assert not hold.hold(request, now=1.042)  # nothing held now: at once


def test_ipv6_and_fin() -> None:
    hold = AckHold()
    fin = segment(SERVER6, CLIENT6, 443, 40000, seq=5000, flags=ACK | FIN, data=200)
    hold.on_data(fin, due=3.040, now=3.005)  # 200 bytes and the FIN: 5201
    ack = segment(CLIENT6, SERVER6, 40000, 443, ack=5201)
    assert hold.hold(ack, now=3.001)
    assert hold.release(3.040) == [ack]


def test_sequence_numbers_wrap() -> None:
    hold = AckHold()
    hold.on_data(data4(0xFFFFFF00, size=1000), due=1.050, now=1.015)  # ends at 0x2E8
    assert hold.hold(ack4(0x2E8), now=1.010) and hold.due() == 1.050


def test_memory_is_bounded() -> None:
    hold = AckHold(flow_limit=8, segment_limit=16, pending_limit=4, line_limit=32)
    for port in range(100):
        for seq in range(0, 40_000, 1000):
            hold.on_data(
                segment(SERVER4, CLIENT4, 443, port, seq=seq, data=1000), due=10.0, now=9.965
            )
    assert len(hold._segments) == 8
    assert all(len(s) <= 16 for s in hold._segments.values())
    # Acknowledged segments are forgotten.
    assert hold.hold(segment(CLIENT4, SERVER4, 99, 443, ack=40_000), now=1.0)
    assert len(hold._segments[SERVER4 + CLIENT4 + struct.pack("!HH", 443, 99)]) == 0
    # The held packets: at most `line_limit`; then packets go at once and are counted.
    for port in range(92, 100):
        for seq in range(0, 40_000, 1000):
            hold.on_data(
                segment(SERVER4, CLIENT4, 443, port, seq=seq, data=1000), due=10.0, now=9.965
            )
    sent_now = 0
    for port in range(92, 100):
        for seq in range(1000, 17_000, 1000):
            if not hold.hold(segment(CLIENT4, SERVER4, port, 443, ack=seq + 24_000), now=1.0):
                sent_now += 1
    assert len(hold) == 32 and hold.overflow == sent_now > 0
    assert len(hold.release(10.0)) == 32 and not hold._pending
    # Connections with held packets, for order: past `pending_limit`, those whose held
    # packets are all due are swept (here the four of the first round, never released).
    track = AckHold(pending_limit=4)
    for port in range(4):
        track.on_data(segment(SERVER4, CLIENT4, 443, port, seq=0, data=100), due=2.0, now=1.0)
        assert track.hold(segment(CLIENT4, SERVER4, port, 443, ack=100), now=1.0)
    assert len(track._pending) == 4
    track.on_data(segment(SERVER4, CLIENT4, 443, 9, seq=0, data=100), due=4.0, now=3.0)
    assert track.hold(segment(CLIENT4, SERVER4, 9, 443, ack=100), now=3.0)
    assert list(track._pending.values()) == [4.0]


def test_stale_segments_and_connections_are_forgotten_first() -> None:
    hold = AckHold(flow_limit=2)
    busy = segment(SERVER4, CLIENT4, 443, 1, seq=0, data=100)
    idle = segment(SERVER4, CLIENT4, 443, 2, seq=0, data=100)
    hold.on_data(busy, due=0.6, now=0.5)
    hold.on_data(idle, due=1.0, now=1.0)
    hold.on_data(segment(SERVER4, CLIENT4, 443, 1, seq=100, data=100), due=4.6, now=4.5)
    # (the busy connection's segment due at 0.6 is over 1 s old: forgotten)
    assert [end for end, _ in hold._segments[SERVER4 + CLIENT4 + bytes((1, 187, 0, 1))]] == [200]
    hold.on_data(segment(SERVER4, CLIENT4, 443, 3, seq=0, data=100), due=5.1, now=5.0)
    ports = sorted(key[-1] for key in hold._segments)
    assert ports == [1, 3]  # the idle one went, though noted after the busy one


@given(st.binary(max_size=120), st.floats(0, 10), st.floats(0, 10))
def test_no_input_raises(packet: bytes, due: float, now: float) -> None:
    hold = AckHold()
    hold.on_data(packet, due, now)
    hold.hold(packet, now)
    hold.release(now)
