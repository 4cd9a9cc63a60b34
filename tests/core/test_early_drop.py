"""Active queue management in the sender's queues (`SessionConfig.early_drop`) and the
ECN marking it uses for ECN-capable packets."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from braid.core.classify import ecn_marked
from braid.core.session import Event, PathDown, PathUp, SessionConfig, TunnelSession

from .pairnet import udp_packet
from .test_session import connected, events

SID = 0x5EED0E0D


def _ipv4_checksum_ok(header: bytes) -> bool:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total == 0xFFFF


def _with_checksum(header: bytearray) -> bytearray:
    header[10:12] = b"\0\0"
    total = sum(struct.unpack(f"!{len(header) // 2}H", bytes(header)))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    header[10:12] = (~total & 0xFFFF).to_bytes(2, "big")
    return header


@given(
    dscp=st.integers(0, 63),
    ecn=st.integers(0, 3),
    rest=st.binary(min_size=16, max_size=16),
    payload=st.binary(max_size=40),
)
def test_ipv4_ce_mark_keeps_the_header_checksum_valid(
    dscp: int, ecn: int, rest: bytes, payload: bytes
) -> None:
    header = _with_checksum(
        bytearray(bytes((0x45, dscp << 2 | ecn)) + rest[:8] + bytes(2) + rest[8:])
    )
    assert _ipv4_checksum_ok(bytes(header))
    packet = bytes(header) + payload
    marked = ecn_marked(packet)
    if ecn == 0:
        assert marked is None  # Not-ECT: the caller drops it instead
        return
    assert marked is not None
    assert marked[1] == (dscp << 2 | 3)  # CE, the DSCP kept
    assert _ipv4_checksum_ok(marked[:20])
    assert marked[:1] + marked[2:10] + marked[12:] == packet[:1] + packet[2:10] + packet[12:]


def test_ipv6_ce_mark_and_non_ip() -> None:
    base = bytearray(40)
    base[0] = 0x6B  # version 6, traffic class 0xB? (DSCP bits) ...
    base[1] = 0x10 | 0x0A  # ... ECN ECT(1) in the class's low bits, flow label bits kept
    marked = ecn_marked(bytes(base) + b"x")
    assert marked is not None
    assert marked[1] == 0x3A and marked[0] == 0x6B and marked[2:] == bytes(base[2:]) + b"x"
    base[1] = 0x0A  # Not-ECT
    assert ecn_marked(bytes(base)) is None
    assert ecn_marked(b"\x00\x01") is None and ecn_marked(b"") is None
    ce = bytearray(udp_packet(1, 0))
    ce[1] = 0x03
    assert ecn_marked(bytes(ce)) == bytes(ce)  # already CE: as it is


def _session(early_drop: float) -> TunnelSession:
    """A local session with one 1 Mbit/s path whose peer never answers: what is queued
    stays queued (the pacer sends at most a cwnd), so the queue is under the test's hand."""
    config = SessionConfig(early_drop=early_drop, early_drop_interval=0.1, queue_limit=0.5)
    session = TunnelSession(config, role="local", session_id=SID, now=0.0)
    session.add_path(0, rate_bps=1_000_000, now=0.0)
    return session


def _fill(session: TunnelSession, flow: int, count: int, now: float) -> int:
    """Send `count` packets of `flow`; the number the session took."""
    taken = 0
    for seq in range(count):
        if session.send_packet(udp_packet(flow, seq, 1000), now=now):
            taken += 1
    session.datagrams_to_send(now=now)
    return taken


@pytest.mark.parametrize("early_drop", [0.0, 0.5])
def test_early_drop_takes_one_packet_of_the_fat_flow_per_interval(early_drop: float) -> None:
    session = _session(early_drop)
    stats = session.statistics()
    limit = stats.queue_limit_bytes
    assert limit >= 40_000
    # Fill past half the limit with one bulk flow (what the pacer sent is no longer queued).
    now = 0.0
    while session.statistics().queued_bytes < 0.6 * limit:
        now += 0.001
        _fill(session, 1, 5, now)
    before = session.statistics()
    if not early_drop:
        assert before.early_dropped == before.early_marked == 0
        return
    assert before.early_dropped == 1  # the first packet past the threshold, only it
    # Within the interval nothing more is dropped ...
    _fill(session, 1, 10, now + 0.05)
    assert session.statistics().early_dropped == 1
    # ... a thin flow's packet is not the victim when the interval has passed ...
    assert session.send_packet(udp_packet(2, 0, 1000), now=now + 0.2)  # (sparse: exempt)
    assert session.send_packet(udp_packet(2, 1, 1000), now=now + 0.2)  # (1 of ~40 queued)
    assert session.statistics().early_dropped == 1
    # ... the fat flow's next packet is, and an ECN-capable one is marked instead.
    ect = bytearray(udp_packet(1, 99, 1000))
    ect[1] = 0x02  # ECT(0)
    assert session.send_packet(bytes(ect), now=now + 0.2)
    after = session.statistics()
    assert after.early_dropped == 1 and after.early_marked == 1
    # The control law: while the queue stays above the threshold, the signals come
    # faster (interval / sqrt(count)): 0.1 s after the mark, then 0.0707 s after that.
    t = now + 0.2
    for seq, (dt, dropped) in enumerate(((0.099, 1), (0.001, 2), (0.07, 2), (0.001, 3))):
        t += dt
        assert session.send_packet(udp_packet(1, 100 + seq, 1000), now=t)
        assert session.statistics().early_dropped == dropped, (seq, t)


def test_below_the_threshold_nothing_is_dropped() -> None:
    session = _session(0.5)
    limit = session.statistics().queue_limit_bytes
    now = 0.0
    while session.statistics().queued_bytes < 0.4 * limit:
        now += 0.001
        _fill(session, 1, 5, now)
    stats = session.statistics()
    assert stats.early_dropped == stats.early_marked == 0


def test_config_rejects_an_early_drop_at_or_past_the_limit() -> None:
    with pytest.raises(ValueError, match="early_drop"):
        SessionConfig(early_drop=1.0)
    with pytest.raises(ValueError, match="early_drop_interval"):
        SessionConfig(early_drop_interval=0)


def _step(local: TunnelSession, remote: TunnelSession, now: float, *, cut: bool) -> list[Event]:
    """One 10 ms step of a bulk flow from `local`; path 1 delivers nothing while `cut`."""
    for seq in range(3):
        local.send_packet(udp_packet(1, int(now * 1000) + seq, 1000), now=now)
    local.handle_timer(now=now)
    for path_id, data in local.datagrams_to_send(now=now):
        if not (cut and path_id == 1):
            remote.receive_datagram(data, now=now)
    remote.handle_timer(now=now)
    for path_id, data in remote.datagrams_to_send(now=now):
        if not (cut and path_id == 1):
            local.receive_datagram(data, now=now)
    remote.packets_to_deliver()
    return events(local)


def _step_until(
    local: TunnelSession, remote: TunnelSession, now: float, kind: type, *, cut: bool
) -> float:
    """Step (10 ms at a time, at most 10 s) until `local` reports an event of `kind`."""
    deadline = now + 10.0
    seen: list[Event] = []
    while not any(isinstance(e, kind) for e in seen):
        now = round(now + 0.01, 6)
        assert now < deadline, f"no {kind.__name__} within 10 s"
        seen = _step(local, remote, now, cut=cut)
    return now


def test_early_drop_is_quiet_while_a_path_is_down() -> None:
    """issue 5/6: while a path is down (up to a minute), and 3 s after it is back, early
    drop does not signal: the inner flow keeps the window it will need on all paths."""
    config = SessionConfig(early_drop=0.5, scheduler="round-robin")
    local, remote = connected((0, 1), config)
    assert (
        local.early_drop_active
        and not TunnelSession(
            SessionConfig(early_drop=0.0), role="local", session_id=SID, now=0.0
        ).early_drop_active
    )
    now = _step_until(local, remote, 0.0, PathDown, cut=True)
    assert now < 3.0 and not local.early_drop_active
    # A burst far past the threshold at one instant: nothing is early-dropped.
    limit = local.statistics().queue_limit_bytes
    for seq in range(limit // 1000):
        local.send_packet(udp_packet(1, 10_000 + seq, 1000), now=now)
    stats = local.statistics()
    assert stats.queued_bytes > 0.6 * limit and stats.early_dropped == stats.early_marked == 0
    # The path comes back: quiet through its hold-down (0.2 s) and 3 s more, then on.
    now = up_at = _step_until(local, remote, now, PathUp, cut=False)
    while now < up_at + 3.1:
        assert not local.early_drop_active, now - up_at
        now = round(now + 0.01, 6)
        _step(local, remote, now, cut=False)
    while now < up_at + 3.3:
        now = round(now + 0.01, 6)
        _step(local, remote, now, cut=False)
    assert local.early_drop_active
    # Down for good: on again a minute after it went down.
    now = down_at = _step_until(local, remote, now, PathDown, cut=True)
    while now < down_at + 59.0:
        now = round(now + 0.5, 6)
        _step(local, remote, now, cut=True)
        assert not local.early_drop_active, now
    now = down_at + 60.5
    _step(local, remote, now, cut=True)
    assert local.early_drop_active
