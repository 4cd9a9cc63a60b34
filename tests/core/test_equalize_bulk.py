"""`equalize = "bulk"`: the ingress marks a TCP flow it sees in BBR's PROBE_RTT (a pause
after a bulk run, a trickle of at least 150 ms, bulk again) and the egress holds the
flow's marked packets to the slowest path's delay from then on; a short exchange, a flow
that pauses for its application, or one that never pauses, is never held."""

from __future__ import annotations

import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from braid.core.equalize import (
    ANTICIPATE_AT,
    ANTICIPATE_FOR,
    FORGET,
    REMEMBER_AFTER,
    BulkFlows,
    BulkPairs,
    host_pair,
)
from braid.core.session import SessionConfig
from braid.core.wire import (
    FEATURE_COMPACT,
    FEATURE_HOLD,
    FEATURE_PACK,
    FEATURE_TRIM,
    FLAG_HOLD,
    DataFrame,
    decode_datagram,
    encode,
)

from .pairnet import (
    LOCAL,
    REMOTE,
    LinkProfile,
    PairNet,
    assert_round_trips_held,
    parse_packet,
    tcp_packet,
)

FAST, SLOW = 0.005, 0.040
BULK, PAUSED, SHORT = 1, 2, 3
SIZE = 1200


def _bulk(start: float, seconds: float, interval: float = 0.0004) -> list[float]:
    """Send times of a bulk run (0.4 ms apart: 24 Mbit/s of 1200-byte packets)."""
    return [start + i * interval for i in range(int(seconds / interval))]


def _probe_rtt(start: float, *, rtt: float = 0.05, rounds: int = 5) -> list[float]:
    """A PROBE_RTT trickle from `start`: four packets each round trip."""
    return [start + r * rtt + k * 0.0002 for r in range(rounds) for k in range(4)]


def _feed(flows: BulkFlows, bucket: int, times: list[float], queued: int = 20) -> None:
    """The packets of a flow at `times`, each finding `queued` of the flow queued (a bulk
    flow keeps some queued; a trickle finds none)."""
    for at in times:
        flows.on_packet(bucket, SIZE, at, queued)


# -- the marker alone ------------------------------------------------------------------


def test_probe_rtt_after_a_bulk_run_marks_the_flow_for_good() -> None:
    flows = BulkFlows()
    _feed(flows, 7, _bulk(0.0, 2.0))
    assert flows.marked == set() and flows.trials == 0
    # The drain: nothing for a round trip; then the trickle, marked from its first packet.
    trickle = _probe_rtt(2.04)
    flows.on_packet(7, SIZE, trickle[0], 0)
    assert flows.marked == {7} and flows.trials == 1 and flows.held == 0
    _feed(flows, 7, trickle[1:], 0)
    assert flows.marked == {7} and flows.held == 0
    _feed(flows, 7, _bulk(trickle[-1] + 0.05, 1.0))  # bulk again: that was PROBE_RTT
    assert flows.marked == {7} and flows.held == 1
    # Held from then on, through pauses and later PROBE_RTTs, until forgotten when idle.
    _feed(flows, 7, _bulk(4.0, 0.5))
    _feed(flows, 7, [5.0, 5.5, 6.0], 0)
    assert flows.marked == {7} and flows.trials == 1
    flows.on_packet(8, SIZE, 6.0 + FORGET + 1, 0)  # (a new flow sweeps the old ones)
    assert flows.marked == set()


def test_a_hiccup_a_pause_or_a_slow_trickle_lets_the_flow_go() -> None:
    flows = BulkFlows()
    # A hiccup in bulk: 5 ms without packets, the queue ran dry, then bulk at once.
    _feed(flows, 1, _bulk(0.0, 2.0))
    flows.on_packet(1, SIZE, 2.005, 0)
    assert flows.marked == {1} and flows.trials == 1
    _feed(flows, 1, _bulk(2.0054, 0.01), 0)
    assert flows.marked == set() and flows.held == 0
    assert flows.ends["hiccup"] == 1 and sum(flows.ends.values()) == 1
    # ... and its run goes on: the next PROBE_RTT is caught.
    _feed(flows, 1, _bulk(2.02, 0.5))
    _feed(flows, 1, _probe_rtt(2.56), 0)
    _feed(flows, 1, _bulk(2.82, 0.1))
    assert flows.marked == {1} and flows.held == 1
    # An application's 300 ms pause between two bulk runs (a video's next chunk).
    _feed(flows, 2, _bulk(0.0, 2.0))
    _feed(flows, 2, _bulk(2.3, 1.0), 0)
    assert 2 not in flows.marked
    # A trickle with a 150 ms hole in it: an application's pause, not PROBE_RTT.
    _feed(flows, 3, _bulk(0.0, 2.0))
    _feed(flows, 3, [2.05, 2.06, 2.21, 2.22], 0)
    _feed(flows, 3, _bulk(2.3, 1.0))
    assert 3 not in flows.marked
    assert flows.ends["pause"] == 1
    # A trickle that goes on (a slow flow now): let go after a second.
    _feed(flows, 4, _bulk(0.0, 2.0))
    _feed(flows, 4, [2.05 + 0.02 * i for i in range(80)], 0)
    assert 4 not in flows.marked
    assert flows.held == 1
    assert flows.ends["long"] == 1
    # A retransmission (a sequence number below one seen) ends a trial at once.
    for k, at in enumerate(_bulk(0.0, 2.0)):
        flows.on_packet(6, SIZE, at, 20, seq=1 + k * SIZE)
    flows.on_packet(6, SIZE, 2.05, 0, seq=10_000_000)
    assert 6 in flows.marked
    flows.on_packet(6, SIZE, 2.06, 0, seq=1 + SIZE)
    assert 6 not in flows.marked and flows.ends["resend"] == 1
    assert sum(flows.ends.values()) == flows.trials - flows.held == 4


def test_short_exchanges_and_bulk_that_keeps_a_queue_are_never_marked() -> None:
    flows = BulkFlows()
    # Requests and responses on one connection: 10 kB and 200 kB, 60 and 200 ms apart.
    at = 0.0
    for _ in range(20):
        _feed(flows, 5, [at + i * 0.0004 for i in range(8)], 0)
        at += 0.06
        _feed(flows, 5, [at + i * 0.0004 for i in range(170)], 0)
        at += 0.2
    # A bulk flow with up to 8 ms between packets (ACK-clocked bursts), its queue never
    # empty.
    _feed(flows, 6, [i * 0.0004 + (0.008 if i % 500 == 0 else 0.0) for i in range(20000)])
    assert flows.trials == 0 and flows.marked == set()


def test_a_flow_that_leaves_the_paths_unused_is_marked_ahead_of_its_first_probe_rtt() -> None:
    """A BBR flow stuck on the shorter paths keeps no queue in the tunnel, so its
    PROBE_RTT does not start a trial (a CI run, 2026-11-29: 0 trials, 31 Mbit/s over four
    links). BBR enters PROBE_RTT 10 s after the minimum it took in its first round trips:
    a bulk flow without a queue at less than 3/4 of the paths' rate is marked from
    `ANTICIPATE_AT` on, and its PROBE_RTT then holds it for good."""
    stuck = _bulk(0.0, ANTICIPATE_AT + 0.5)  # 24 Mbit/s of the paths' 100, no queue
    hiccup = _bulk(stuck[-1] + 0.005, 0.4)
    probe = _probe_rtt(hiccup[-1] + 0.06)  # (the drain: a held round trip)
    again = _bulk(probe[-1] + 0.05, 5.0)
    # Without a capacity (the session did not say): never marked, as before.
    blind = BulkFlows()
    _feed(blind, 7, stuck + hiccup + probe + again, 0)
    assert blind.trials == 0 and blind.marked == set() and blind.ahead == 0
    flows = BulkFlows()
    flows.capacity = 12_500_000
    _feed(flows, 7, [t for t in stuck if t < ANTICIPATE_AT], 0)
    assert flows.marked == set()
    _feed(flows, 7, [t for t in stuck if t >= ANTICIPATE_AT], 0)
    assert flows.marked == {7} and flows.ahead == 1 and flows.trials == 0
    # A hiccup in the window is a trial that fails: the flow stays marked ahead.
    _feed(flows, 7, hiccup, 0)
    assert flows.marked == {7} and flows.trials == 1 and flows.held == 0
    assert flows.ends["hiccup"] == 1
    _feed(flows, 7, probe, 0)
    _feed(flows, 7, again, 0)
    assert flows.marked == {7} and flows.held == 1 and flows.trials == 2
    # (held for good: past the window too)
    _feed(flows, 7, _bulk(again[-1] + 0.001, ANTICIPATE_FOR), 0)
    assert flows.marked == {7} and flows.ahead == 1


def test_a_flow_marked_ahead_without_a_probe_rtt_is_let_go_once() -> None:
    flows = BulkFlows()
    flows.capacity = 12_500_000
    # Not BBR (or its minimum is younger): marked from ANTICIPATE_AT for ANTICIPATE_FOR
    # seconds, then let go for good.
    _feed(flows, 1, _bulk(0.0, ANTICIPATE_AT + ANTICIPATE_FOR - 0.1), 0)
    assert flows.marked == {1} and flows.ahead == 1
    _feed(flows, 1, _bulk(ANTICIPATE_AT + ANTICIPATE_FOR, 20.0), 0)
    assert flows.marked == set() and flows.ahead == 1 and flows.held == 0
    assert flows.ends["ahead_expired"] == 1
    # An application's pause while marked ahead: let go.
    _feed(flows, 2, _bulk(0.0, ANTICIPATE_AT + 1.0), 0)
    assert 2 in flows.marked
    _feed(flows, 2, _bulk(ANTICIPATE_AT + 1.6, 1.0), 0)
    assert 2 not in flows.marked and flows.ahead == 2
    assert flows.ends["ahead_pause"] == 1 and sum(flows.ends.values()) == 2
    # Never marked ahead: a flow that keeps a queue (its PROBE_RTT starts a trial), one
    # that fills the paths (at 3/4 of their rate or more), one in short runs (an
    # application's pauses every second).
    _feed(flows, 3, _bulk(0.0, ANTICIPATE_AT + 2.0))
    flows.capacity = 3_000_000  # 24 Mbit/s: the flow's own rate
    _feed(flows, 4, _bulk(0.0, ANTICIPATE_AT + 2.0), 0)
    flows.capacity = 12_500_000
    for k in range(12):
        _feed(flows, 5, _bulk(k * 1.0, 0.8), 0)
    assert flows.marked == set() and flows.ahead == 2 and flows.trials == 0


@settings(max_examples=200, deadline=None)
@given(
    events=st.lists(
        st.tuples(
            st.floats(min_value=0.0, max_value=0.3),
            st.integers(min_value=0, max_value=3),
            st.integers(min_value=0, max_value=2),
        ),
        min_size=1,
        max_size=400,
    )
)
def test_any_arrival_pattern_keeps_the_books_straight(
    events: list[tuple[float, int, int]],
) -> None:
    flows = BulkFlows()
    flows.capacity = 1_000_000.0 * (len(events) % 4)  # (0: none, or 1-3 MB/s)
    at = 0.0
    for gap, bucket, queued in events:
        at += gap
        flows.on_packet(bucket, 60_000, at, queued)  # (large: a run after a few packets)
    assert flows.marked <= {0, 1, 2, 3}
    assert flows.held <= flows.trials
    assert flows.ahead <= 4


# -- through a session: FLAG_HOLD on the wire, held at the egress ------------------------


def test_flag_hold_round_trips_on_data() -> None:
    frame = DataFrame(3, 9, 1, 2, 5, 7, 11, b"\x45" + bytes(39), hold=True)
    wire = encode(frame)
    assert wire[2] == FLAG_HOLD
    assert decode_datagram(wire) == frame


def _net(seed: int, remote: str = "bulk", remember: float = 600.0) -> PairNet:
    """The local portal with `equalize = "bulk"`, the remote with `remote`, over
    10 Mbit/s 5 ms + 40 Mbit/s 40 ms."""
    return PairNet(
        seed,
        {0: LinkProfile(delay=FAST), 1: LinkProfile(delay=SLOW)},
        config=SessionConfig(equalize="bulk"),
        remote_config=SessionConfig(equalize=remote, equalize_remember=remember),
        rates={0: 10_000_000, 1: 40_000_000},
    )


def _run_bulk(
    remote: str = "bulk", remember: float = 600.0
) -> tuple[PairNet, dict[int, list[tuple[int, float, float]]]]:
    net = _net(11, remote, remember)
    net.run_until(0.7)
    times: dict[int, list[float]] = {}
    # BULK: light (4.8 Mbit/s), 2 s in bulk (12 Mbit/s), PROBE_RTT, 1 s in bulk, light.
    trickle = _probe_rtt(3.08)  # (after the drain: a round trip and the queue)
    first = [0.7 + i * 0.002 for i in range(150)]
    light = [trickle[-1] + 1.05 + i * 0.002 for i in range(500)]
    bulk = _bulk(1.0, 2.0, 0.0008) + trickle + _bulk(trickle[-1] + 0.05, 1.0, 0.0008)
    times[BULK] = first + bulk + light
    # PAUSED: the same, with an application's 300 ms pause instead of PROBE_RTT, then
    # light (0.6 Mbit/s). In all, the bulk runs fill the paths to half; the light phases fit
    # the fast path. (PAUSED's light phase and SHORT's exchanges stay sparse: within the
    # share of the fast path's rate that sparse packets may jump its queue with.)
    times[PAUSED] = _bulk(1.0, 2.0, 0.0008) + [3.3 + i * 0.015 for i in range(120)]
    # SHORT: 4 packets now and then while the others run.
    times[SHORT] = [1.5 + k * 0.5 + i * 0.001 for k in range(7) for i in range(4)]
    sent: dict[tuple[int, int], float] = {}
    for flow, flow_times in times.items():
        for seq, at in enumerate(flow_times):
            sent[(flow, seq)] = at
            net.schedule(LOCAL, at, tcp_packet(flow, seq))
    net.run_until(max(max(t) for t in times.values()) + 1.0)
    delivered: dict[int, list[tuple[int, float, float]]] = {f: [] for f in times}
    for at, packet in net.delivered[REMOTE]:
        flow, seq = parse_packet(packet)
        delivered[flow].append((seq, sent[(flow, seq)], at - sent[(flow, seq)]))
    return net, delivered


def test_a_flow_is_held_from_its_probe_rtt_on_and_others_never() -> None:
    net, flows = _run_bulk()
    bulk = flows[BULK]
    assert [seq for seq, _, _ in bulk] == list(range(len(bulk)))  # in order, none lost
    # Before PROBE_RTT: not held (light at first: the fast path's delay).
    before = [d for _, at, d in bulk if at < 1.0]
    assert statistics.median(before) < FAST + 0.003, statistics.median(before)
    # The trickle and everything after: the slow path's delay at least.
    after = [d for _, at, d in bulk if at >= 3.08]
    assert min(after) >= SLOW - 0.001, min(after)
    light = [d for _, at, d in bulk if at >= 5.0]
    assert statistics.median(light) < SLOW + 0.003, statistics.median(light)
    # The flow paused by its application and the short exchanges: the fast path's delay.
    paused = flows[PAUSED]
    assert [seq for seq, _, _ in paused] == list(range(len(paused)))
    assert statistics.median(d for _, at, d in paused if at >= 3.5) < FAST + 0.003
    short = flows[SHORT]
    assert len(short) == 28 and statistics.median(d for _, _, d in short) < FAST + 0.005
    local, remote = net.session(LOCAL).statistics(), net.session(REMOTE).statistics()
    assert local.equalize_trials == 1 and local.equalize_flows == 1
    assert remote.equalized > 500 and remote.equalize_overflow == 0


def test_the_ingress_marks_nothing_for_a_peer_that_does_not_hold() -> None:
    """FEATURES: each portal with `equalize = "bulk"` tells the peer, on every path as it
    comes up, that its egress holds DATA flagged *hold*. The local portal's ingress marks
    flows only for a peer that said so: a remote with "off" (or "tcp", or a portal older
    than FEATURES, which would drop the flag as `bad_flags`) does not say so (its FEATURES
    carry only *compact*, or none come), and the same traffic as above then goes unmarked
    and unheld."""
    for remote in ("off", "tcp"):
        net, flows = _run_bulk(remote)
        local, peer = net.session(LOCAL).statistics(), net.session(REMOTE).statistics()
        assert local.peer_features == FEATURE_COMPACT | FEATURE_TRIM | FEATURE_PACK
        assert peer.peer_features == FEATURE_HOLD | FEATURE_COMPACT | FEATURE_TRIM | FEATURE_PACK
        assert local.equalize_trials == 0 and local.equalize_flows == 0
        assert peer.drops["bad_flags"] == 0
        bulk = flows[BULK]
        assert [seq for seq, _, _ in bulk] == list(range(len(bulk)))
        # After the PROBE_RTT, light again: the fast path's delay ("tcp" holds every
        # TCP data packet itself, so only "off" shows it).
        light = [d for _, at, d in bulk if at >= 5.0]
        if remote == "off":
            assert peer.equalized == 0
            assert statistics.median(light) < FAST + 0.003, statistics.median(light)
    net, _ = _run_bulk()
    local, peer = net.session(LOCAL).statistics(), net.session(REMOTE).statistics()
    assert (
        local.peer_features
        == peer.peer_features
        == FEATURE_HOLD | FEATURE_COMPACT | FEATURE_TRIM | FEATURE_PACK
    )


def test_a_hiccup_in_bulk_costs_no_hold() -> None:
    """A bulk flow (24 Mbit/s over 10 + 40 Mbit/s) stops for 45 ms now and then: each time
    its queue runs dry the ingress marks it on trial and unmarks it when the bulk resumes
    at once; the egress lets the packets it held for the trial go when the first unmarked
    one arrives (also those still waiting in the reorder buffer), so no packet waits the
    spread on top of its queueing (without that, up to 75 ms)."""
    net = _net(13)
    net.run_until(1.0)
    times: list[float] = []
    at = 1.0
    while at < 5.0:
        times += _bulk(at, 0.3, 0.0004)
        at = times[-1] + 0.045  # the hiccup: long enough for the queue to run dry
    sent = {}
    for seq, when in enumerate(times):
        sent[seq] = when
        net.schedule(LOCAL, when, tcp_packet(BULK, seq))
    net.run_until(6.0)
    delays = []
    for arrived, packet in net.delivered[REMOTE]:
        _, seq = parse_packet(packet)
        delays.append((seq, arrived - sent[seq]))
    assert [seq for seq, _ in delays] == list(range(len(times)))
    local, remote = net.session(LOCAL).statistics(), net.session(REMOTE).statistics()
    assert local.equalize_trials >= 5 and local.equalize_flows == 0, local.equalize_trials
    assert remote.equalized > 0  # (packets were held for the trials ...)
    late = [d for seq, d in delays if sent[seq] >= 2.0]
    assert max(late) < SLOW + 0.015, max(late)  # (... and let go)


def _exchange(net: PairNet, start: float, flow: int, port: int) -> tuple[float, list[float]]:
    """A new connection from source port `port` to flow `flow`'s host (the pair of hosts
    of that flow): a SYN at `start`, then 100 segments every 2 ms (it fits the fast
    path), each acknowledged by the far end as it arrives. The SYN-ACK's and the
    segments' round trips as the local end sees them."""

    def segment(seq: int, size: int, flags: int) -> bytes:
        packet = bytearray(tcp_packet(flow, seq, size=size, flags=flags))
        packet[20:22] = port.to_bytes(2, "big")
        packet[24:28] = seq.to_bytes(4, "big")
        return bytes(packet)

    net.schedule(LOCAL, start, segment(999, 40, 0x02))
    sent = {}
    for k in range(100):
        sent[1000 + 1160 * (k + 1)] = start + 0.1 + k * 0.002
        net.schedule(LOCAL, start + 0.1 + k * 0.002, segment(1000 + 1160 * k, SIZE, 0x10))
    acked: dict[int, float] = {}
    answered = len(net.delivered[REMOTE])
    seen = len(net.delivered[LOCAL])
    now = start
    while now < start + 0.6:
        now += 0.0005
        net.run_until(now)
        for _, packet in net.delivered[REMOTE][answered:]:
            answered += 1
            if int.from_bytes(packet[20:22], "big") != port:
                continue
            syn = packet[33] == 0x02
            end = int.from_bytes(packet[24:28], "big") + (1 if syn else len(packet) - 40)
            reply = bytearray(tcp_packet(flow, 5000, size=40, flags=0x12 if syn else 0x10))
            reply[12:20] = packet[16:20] + packet[12:16]
            reply[20:24] = packet[22:24] + packet[20:22]
            reply[28:32] = end.to_bytes(4, "big")
            net.schedule(REMOTE, now, bytes(reply))
        for at, packet in net.delivered[LOCAL][seen:]:
            if int.from_bytes(packet[22:24], "big") == port:
                acked.setdefault(int.from_bytes(packet[28:32], "big"), at)
        seen = len(net.delivered[LOCAL])
    rtts = [acked[end] - at for end, at in sent.items() if end in acked]
    assert len(rtts) == 100
    return acked[1000] - start, rtts


@pytest.mark.parametrize("remember", [600.0, 0.0])
def test_a_new_connection_between_hosts_a_flow_was_held_between_gets_ack_at_once(
    remember: float,
) -> None:
    """Once a flow is held for good (its PROBE_RTT, 10 s into a BBR flow), the egress
    remembers its pair of hosts (`equalize_remember`): a new connection between them gets
    "ack" from its SYN on (its SYN-ACK and acknowledgements wait half the paths' spread,
    so a BBR sender's first minimum round trip covers the slow path), instead of 10 s
    with the fast path's round trip; a connection to another host pays nothing. With
    `equalize_remember = 0` nothing is remembered."""
    net, _ = _run_bulk(remember=remember)
    remote = net.session(REMOTE).statistics()
    assert remote.equalize_pairs == (1 if remember else 0)
    start = net.now + 0.5
    syn_ack, rtts = _exchange(net, start, BULK, 40_000)
    other_syn_ack, other = _exchange(net, start + 1.0, SHORT, 40_001)
    fast = 2 * FAST + 0.004
    assert other_syn_ack < fast and max(other) < fast, (other_syn_ack, max(other))
    remote = net.session(REMOTE).statistics()
    if remember:
        assert_round_trips_held(syn_ack, rtts, FAST, SLOW)
        assert remote.equalize_paired == 1
    else:
        assert syn_ack < fast and max(rtts) < fast, (syn_ack, max(rtts))
        assert remote.equalize_paired == 0


def test_pairs_are_remembered_for_a_while_and_bounded() -> None:
    pairs = BulkPairs(10.0, limit=2)
    a, b, c = (tcp_packet(flow, 0) for flow in (1, 2, 3))
    pairs.on_marked(7, a, 0.0)
    pairs.on_marked(7, a, 1.0)
    assert not pairs.knows(a, 1.0)  # (marked 1 s: maybe a trial)
    pairs.on_unmarked(7)
    pairs.on_marked(7, a, 2.0)
    pairs.on_marked(7, a, 2.0 + REMEMBER_AFTER)  # (a new marking: 1.5 s from its start)
    assert pairs.knows(a, 4.0) and not pairs.knows(b, 4.0) and len(pairs) == 1
    assert not pairs.knows(a, 3.5 + 10.1)  # expired
    for packet in (a, b, c):
        pairs.remember(host_pair(packet), 20.0)
    assert len(pairs) == 2 and not pairs.knows(a, 20.0) and pairs.knows(c, 20.0)
    assert pairs.remembered == 4
    assert host_pair(b"\x45" + bytes(20)) == b"" and not pairs.knows(b"", 20.0)
