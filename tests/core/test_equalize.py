"""Egress delay equalization (`equalize`): a TCP flow spread over a 5 ms and a 40 ms path
leaves the egress with the slow path's delay, in order, whichever path carried each
packet; a UDP flow (pings, calls) and pure TCP acknowledgements keep the fast path's
delay, a SYN is held; "off" lets fast-path packets through at once."""

from __future__ import annotations

import statistics

import pytest

from braid.core.ackhold import ACK_HOLD_SHARE
from braid.core.classify import TrafficClass
from braid.core.session import SessionConfig

from .pairnet import (
    LOCAL,
    REMOTE,
    LinkProfile,
    PairNet,
    assert_round_trips_held,
    parse_packet,
    tcp_packet,
    udp_packet,
)

FAST, SLOW = 0.005, 0.040
TCP_FLOW, UDP_FLOW, ACK_FLOW, SYN_FLOW = 1, 2, 3, 4


def _run(
    mode: str, *, interval: float = 0.0004
) -> tuple[PairNet, dict[int, list[tuple[int, float]]]]:
    """A TCP flow of 1200-byte packets every `interval` (0.4 ms: 24 Mbit/s, more than the
    10 Mbit/s fast path, so it spills onto the slow one) and a 50-packet/s UDP flow, from
    1 s on; per flow, (seq, one-way delay) as delivered."""
    config = SessionConfig(equalize=mode)
    net = PairNet(
        7,
        {0: LinkProfile(delay=FAST), 1: LinkProfile(delay=SLOW)},
        config=config,
        rates={0: 10_000_000, 1: 40_000_000},
    )
    net.run_until(1.0)
    sent: dict[tuple[int, int], float] = {}
    for seq in range(5000):
        at = 1.0 + seq * interval
        sent[(TCP_FLOW, seq)] = at
        net.schedule(LOCAL, at, tcp_packet(TCP_FLOW, seq))
    for seq in range(100):
        at = 1.0 + seq * 0.02
        sent[(UDP_FLOW, seq)] = at
        net.schedule(LOCAL, at, udp_packet(UDP_FLOW, seq))
        # Pure acknowledgements of another connection, and a SYN every 0.1 s (40 bytes).
        sent[(ACK_FLOW, seq)] = at + 0.01
        net.schedule(LOCAL, at + 0.01, tcp_packet(ACK_FLOW, seq, size=40))
        if seq % 5 == 0:
            sent[(SYN_FLOW, seq)] = at + 0.015
            net.schedule(LOCAL, at + 0.015, tcp_packet(SYN_FLOW, seq, size=40, flags=0x02))
    net.run_until(2.0 + 5000 * interval)
    flows: dict[int, list[tuple[int, float]]] = {f: [] for f in (1, 2, 3, 4)}
    for at, packet in net.delivered[REMOTE]:
        flow, seq = parse_packet(packet)
        flows[flow].append((seq, at - sent[(flow, seq)]))
    return net, flows


def test_a_tcp_flow_over_unequal_paths_leaves_with_the_slow_paths_delay() -> None:
    net, flows = _run("tcp")
    tcp, udp = flows[TCP_FLOW], flows[UDP_FLOW]
    assert len(tcp) == 5000 and len(udp) == 100
    assert [seq for seq, _ in tcp] == list(range(5000))  # in order, none lost
    sent_on = {path: net.data_sent_on(LOCAL, path, since=1.5) for path in (0, 1)}
    assert min(sent_on.values()) > 500, sent_on  # both paths carried the flow
    steady = [delay for seq, delay in tcp if seq >= 1250]  # (after the first 0.5 s)
    # Every packet waited for the slow path's delay (less the delay line's 0.5 ms early
    # release). A packet that waited in the sender's queue for the fast path is not held
    # that long again: it leaves once a later packet arrived on time over the slow path
    # (without that, the median was 71.5 ms: the spread twice).
    assert min(steady) >= SLOW - 0.001, min(steady)
    assert statistics.median(steady) < SLOW + 0.003, statistics.median(steady)
    assert max(steady) < SLOW + 2 * (SLOW - FAST), max(steady)
    # The UDP flow is not held: the fast path's delay (its packets jump the queue).
    assert statistics.median(d for _, d in udp) < FAST + 0.005
    # Nor are pure acknowledgements (a flow's round trip is its data's delay plus its
    # acknowledgements': holding both doubled the spread); a SYN is held like data.
    acks, syns = flows[ACK_FLOW], flows[SYN_FLOW]
    assert len(acks) == 100 and len(syns) == 20
    assert statistics.median(d for _, d in acks) < FAST + 0.005
    assert min(d for _, d in syns) >= SLOW - 0.001
    stats = net.session(REMOTE).statistics()
    assert stats.equalized > 3000
    assert SLOW - FAST - 0.003 <= stats.equalize_delay <= SLOW - FAST + 0.003
    assert stats.equalize_overflow == 0


@pytest.mark.parametrize("mode", ["tcp", "off"])
def test_a_light_tcp_flow_on_the_fast_path_alone_is_held_to_the_slow_paths_delay(
    mode: str,
) -> None:
    """8 Mbit/s fits the fast path: nothing is queued at the sender, every packet takes it.
    Held, the flow's round trip is the slow path's even now, as BBR must see it."""
    net, flows = _run(mode, interval=0.0012)
    tcp = flows[TCP_FLOW]
    assert [seq for seq, _ in tcp] == list(range(5000))
    assert net.data_sent_on(LOCAL, 1, since=1.5) < 50  # (the slow path: passes only)
    steady = [delay for seq, delay in tcp if seq >= 500]
    if mode == "tcp":
        assert min(steady) >= SLOW - 0.001 and max(steady) < SLOW + 0.003, (
            min(steady),
            max(steady),
        )
    else:
        assert max(steady) < FAST + 0.003, max(steady)
        stats = net.session(REMOTE).statistics()
        assert stats.equalized == 0 and stats.equalize_delay == 0.0


def test_all_holds_every_flow_and_a_bad_mode_is_refused() -> None:
    _, flows = _run("all")
    assert statistics.median(d for _, d in flows[UDP_FLOW]) >= SLOW - 0.001
    assert statistics.median(d for _, d in flows[ACK_FLOW]) >= SLOW - 0.001
    with pytest.raises(ValueError, match="equalize: must be one of bulk, tcp, ack, all, off"):
        SessionConfig(equalize="slow")


@pytest.mark.parametrize(
    ("mode", "own", "held"),
    [("ack", None, True), ("bulk", None, False), ("bulk", "ack", True), ("ack", "off", False)],
)
def test_ack_holds_the_acknowledgement_instead_of_the_segment(
    mode: str, own: str | None, held: bool
) -> None:
    """A light TCP flow on the 5 ms path, acknowledged by the far end as each segment
    arrives: with "ack" the segment is delivered at once and its acknowledgement reaches
    the sender half way (in time) between the fast path's and the 40 ms path's (twice
    that is the round trip BBR must see from its first sample); a SYN-ACK waits likewise
    for its SYN. "bulk" holds neither.
    A traffic class of the flow's port with its own `equalize` overrides the session's."""
    classes = () if own is None else (TrafficClass("mine", ports=frozenset({5201}), equalize=own),)
    net = PairNet(
        11,
        {0: LinkProfile(delay=FAST), 1: LinkProfile(delay=SLOW)},
        config=SessionConfig(equalize=mode, classes=classes),
        rates={0: 10_000_000, 1: 40_000_000},
    )
    net.run_until(1.0)
    # The SYN at sequence number 999; segment k (1160 bytes of data) at 1000 + 1160 k.
    net.schedule(LOCAL, 1.0, tcp_packet(TCP_FLOW, 999, size=40, flags=0x02))
    sent = {}
    for seq in range(200):  # every 2 ms: 4.8 Mbit/s, fits the fast path
        sent[1000 + 1160 * (seq + 1)] = 1.1 + seq * 0.002
        packet = bytearray(tcp_packet(TCP_FLOW, seq))
        packet[24:28] = (1000 + 1160 * seq).to_bytes(4, "big")
        net.schedule(LOCAL, 1.1 + seq * 0.002, bytes(packet))
    delays = []
    acked: dict[int, float] = {}
    answered = 0
    now = 1.0
    while now < 1.8:
        now += 0.0005
        net.run_until(now)
        for at, packet in net.delivered[REMOTE][answered:]:
            answered += 1
            syn = packet[33] == 0x02
            end = int.from_bytes(packet[24:28], "big") + (1 if syn else len(packet) - 40)
            if end in sent:
                delays.append(at - sent[end] + 0.0)
            # From the receiver back: addresses and ports swapped, acknowledging the end.
            reply = bytearray(tcp_packet(TCP_FLOW, 5000, size=40, flags=0x12 if syn else 0x10))
            reply[12:20] = packet[16:20] + packet[12:16]
            reply[20:24] = packet[22:24] + packet[20:22]
            reply[28:32] = end.to_bytes(4, "big")
            net.schedule(REMOTE, now, bytes(reply))
        for at, packet in net.delivered[LOCAL]:
            acked.setdefault(int.from_bytes(packet[28:32], "big"), at)
    syn_ack = acked[1000] - 1.0
    rtts = [acked[end] - at for end, at in sent.items() if end in acked]
    assert len(delays) == 200 and len(rtts) == 200
    assert max(delays) < FAST + 0.003, max(delays)  # delivered at once either way
    stats = net.session(REMOTE).statistics()
    if held:
        # Held half the spread (ACK_HOLD_SHARE): twice that round trip covers the slow
        # path's, all BBR needs; a whole spread would add 17.5 ms more.
        assert_round_trips_held(syn_ack, rtts, FAST, SLOW)
        assert 2 * min(rtts) >= SLOW + FAST
        spread = SLOW - FAST  # (what `braid show` reports as the session's hold)
        share = ACK_HOLD_SHARE if mode == "ack" else 1.0
        assert abs(stats.equalize_delay - share * spread) <= 0.003, stats.equalize_delay
        assert stats.equalized >= 200  # the SYN-ACK and every acknowledgement
    else:
        assert syn_ack < 2 * FAST + 0.003, syn_ack
        assert max(rtts) < 2 * FAST + 0.004, max(rtts)
        assert stats.equalized == 0
