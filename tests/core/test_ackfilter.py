"""TCP acknowledgement filtering (`ack_filter`, braid.core.ackfilter): which pure
acknowledgements supersede which, and a session that queues the newest in the place of
the oldest, over a path slower than the acknowledgements."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from braid.core.ackfilter import is_pure_ack, supersedes
from braid.core.session import SessionConfig, TunnelSession

from .pairnet import _ipv4_header

SID = 0xACF11700
ACK = 0x10


def _options(ts: tuple[int, int] | None, sack: list[tuple[int, int]], extra: bytes) -> bytes:
    out = b""
    if ts is not None:
        out += b"\x01\x01\x08\x0a" + struct.pack("!II", *ts)
    if sack:
        out += b"\x01\x01\x05" + bytes((2 + 8 * len(sack),))
        out += b"".join(struct.pack("!II", left, right) for left, right in sack)
    out += extra
    return out + b"\x01" * (-len(out) % 4)


def tcp(
    ack: int,
    *,
    ts: tuple[int, int] | None = (1000, 500),
    sack: list[tuple[int, int]] | None = None,
    flags: int = ACK,
    port: int = 40000,
    payload: bytes = b"",
    extra: bytes = b"",
    v6: bool = False,
    window: int = 502,
) -> bytes:
    """A TCP segment 10.0.0.1:port -> 10.1.0.1:5201 (or over IPv6) acknowledging `ack`."""
    options = _options(ts, sack or [], extra)
    header = struct.pack(
        "!HHIIBBHHH", port, 5201, 7, ack, (20 + len(options)) << 2, flags, window, 0, 0
    )
    segment = header + options + payload
    if v6:
        addresses = bytes(15) + b"\x01" + bytes(15) + b"\x02"
        return struct.pack("!IHBB", 0x6000_0000, len(segment), 6, 64) + addresses + segment
    return _ipv4_header(1, 6, 20 + len(segment)) + segment


@pytest.mark.parametrize("v6", [False, True])
def test_a_later_acknowledgement_supersedes_an_earlier_one_of_its_flow(v6: bool) -> None:
    old = tcp(1000, v6=v6)
    assert is_pure_ack(old)
    assert supersedes(tcp(3896, ts=(1001, 501), v6=v6), old)
    assert supersedes(tcp(3896, ts=(1000, 500), window=100, v6=v6), old)  # the newest window
    assert supersedes(tcp(3896, ts=None, v6=v6), tcp(1000, ts=None, v6=v6))
    # A duplicate acknowledgement counts for the sender; an older one says less.
    assert not supersedes(tcp(1000, ts=(1001, 501), v6=v6), old)
    assert not supersedes(tcp(999, ts=(1001, 501), v6=v6), old)
    # Another connection, an older timestamp, a timestamp missing on one side.
    assert not supersedes(tcp(3896, port=40001, v6=v6), old)
    assert not supersedes(tcp(3896, ts=(999, 501), v6=v6), old)
    assert not supersedes(tcp(3896, ts=(1001, 499), v6=v6), old)
    assert not supersedes(tcp(3896, ts=None, v6=v6), old)
    assert not supersedes(tcp(3896, v6=not v6), old)


def test_sequence_numbers_compare_across_the_wrap() -> None:
    assert supersedes(tcp(100, ts=(5, 1)), tcp(0xFFFF_FF00, ts=(0xFFFF_FFF0, 1)))
    assert not supersedes(tcp(0xFFFF_FF00), tcp(100))


@pytest.mark.parametrize(
    ("packet", "pure"),
    [
        (tcp(1000), True),
        (tcp(1000, payload=b"x"), False),  # data
        (tcp(1000, flags=ACK | 0x01), False),  # FIN
        (tcp(1000, flags=ACK | 0x08), False),  # PSH
        (tcp(1000, flags=ACK | 0x40), False),  # ECE: the sender must hear every echo
        (tcp(1000, flags=0x02), False),  # SYN
        (tcp(1000, v6=True, payload=b"xy"), False),
        (b"", False),
        (b"\x45" + bytes(60), False),
    ],
)
def test_only_pure_acknowledgements_qualify(packet: bytes, pure: bool) -> None:
    assert is_pure_ack(packet) is pure
    if not pure:
        assert not supersedes(packet, tcp(1))
        assert not supersedes(tcp(1 << 20), packet)


def test_sack_blocks_of_the_older_must_be_acknowledged_or_covered() -> None:
    old = tcp(1000, sack=[(3000, 4000)])
    assert supersedes(tcp(1500, sack=[(3000, 5000)]), old)  # covered, grown
    assert supersedes(tcp(1500, sack=[(6000, 7000), (2500, 4000)]), old)  # covered by another
    assert supersedes(tcp(4000), old)  # acknowledged now
    assert not supersedes(tcp(1500), old)  # the hole's report would be lost
    assert not supersedes(tcp(1500, sack=[(3500, 5000)]), old)  # only part of it


def test_unknown_or_broken_options_keep_both() -> None:
    mptcp = b"\x1e\x0c" + bytes(10)  # an MPTCP DSS
    assert not supersedes(tcp(2000, extra=mptcp), tcp(1000, extra=mptcp))
    broken = b"\x05\x03\x00"  # a SACK option of impossible length
    assert not supersedes(tcp(2000, extra=broken), tcp(1000))
    assert not supersedes(tcp(2000), tcp(1000, extra=b"\x08\x40"))  # runs past the header


@given(st.binary(max_size=80), st.binary(max_size=80))
def test_never_raises_and_only_merges_pure_acknowledgements(a: bytes, b: bytes) -> None:
    result = supersedes(a, b)
    if result:
        assert is_pure_ack(a) and is_pure_ack(b)


@given(st.integers(0, 0xFFFF_FFFF), st.integers(1, 0x7FFF_FFFF))
def test_exactly_the_later_of_two_numbers_supersedes(ack: int, ahead: int) -> None:
    old = tcp(ack, ts=None)
    new = tcp((ack + ahead) & 0xFFFF_FFFF, ts=None)
    assert supersedes(new, old) and not supersedes(old, new)


# -- in a session ---------------------------------------------------------------------


def _pair(config: SessionConfig) -> tuple[TunnelSession, TunnelSession]:
    """A local portal with one 200 kbit/s path, already up to its remote."""
    local = TunnelSession(config, role="local", session_id=SID, now=0.0)
    local.add_path(0, rate_bps=200_000, now=0.0)
    remote = TunnelSession(config, role="remote", session_id=SID, now=0.0)
    for now in (0.0, 0.01):
        for _, data in local.datagrams_to_send(now=now):
            remote.receive_datagram(data, now=now)
        for _, data in remote.datagrams_to_send(now=now):
            local.receive_datagram(data, now=now)
    remote.packets_to_deliver()
    return local, remote


def _run(
    local: TunnelSession,
    remote: TunnelSession,
    packets: list[bytes],
    gap: float = 0.001,
    start: float = 0.1,
) -> list[bytes]:
    """Hand `packets` to the local portal `gap` apart (1 ms: 1 Mbit/s of acknowledgements
    into a 200 kbit/s path), everything each portal sends to the other at once; what the
    remote delivers."""
    delivered: list[bytes] = []
    now = start
    for packet in packets:
        assert local.send_packet(packet, now=now)
        delivered += _step(local, remote, now)
        now += gap
    end = now + 2.0
    while now < end:
        delivered += _step(local, remote, now)
        now += 0.005
    return delivered


def _step(local: TunnelSession, remote: TunnelSession, now: float) -> list[bytes]:
    """Timers, then everything each portal sends to the other; what the remote delivers."""
    local.handle_timer(now=now)
    remote.handle_timer(now=now)
    for _, data in local.datagrams_to_send(now=now):
        remote.receive_datagram(data, now=now)
    for _, data in remote.datagrams_to_send(now=now):
        local.receive_datagram(data, now=now)
    return remote.packets_to_deliver()


def _acked(packet: bytes) -> int:
    value: int = struct.unpack_from("!I", packet, 28)[0]
    return value


def test_a_narrow_path_carries_the_newest_acknowledgement_not_a_backlog() -> None:
    local, remote = _pair(SessionConfig())
    sent = [tcp(1000 + 1348 * 2 * i, ts=(1000 + i, 500)) for i in range(200)]
    delivered = _run(local, remote, sent)
    stats = local.statistics()
    acked = [_acked(p) for p in delivered]
    # Fewer went, in order, each one of those sent byte for byte, and the newest last.
    assert stats.acks_filtered > 100
    assert len(delivered) + stats.acks_filtered == len(sent)
    assert acked == sorted(acked) and acked[-1] == _acked(sent[-1])
    assert all(p in sent for p in delivered)
    # Nothing was lost on the way: no gap for the egress to wait for or give up on.
    reorder = remote.statistics().reorder
    assert reorder.packets_skipped == reorder.late == reorder.duplicates == 0
    assert reorder.gaps_skipped_proof == reorder.gaps_skipped_timeout == 0
    assert stats.queued_bytes == 0


def test_off_data_in_between_and_fec_keep_every_acknowledgement() -> None:
    sent = [tcp(1000 + 2696 * i) for i in range(100)]
    for config in (SessionConfig(ack_filter=False), SessionConfig(fec="on")):
        local, remote = _pair(config)
        delivered = _run(local, remote, sent)
        assert local.statistics().acks_filtered == 0
        assert [_acked(p) for p in delivered] == [_acked(p) for p in sent]
    # A segment with data queued after an acknowledgement is the flow's newest packet:
    # the next acknowledgement queues behind it (the egress delivers the flow in order).
    local, remote = _pair(SessionConfig())
    mixed = [tcp(1000 + 2696 * i, payload=b"d" * 100 if i % 2 else b"") for i in range(100)]
    delivered = _run(local, remote, mixed)
    assert local.statistics().acks_filtered == 0
    assert delivered == mixed


def test_with_fair_queueing_no_acknowledgement_overtakes_its_flows_waiting_data() -> None:
    """`fair_queue`: a segment with data that waits in its flow's own queue has no number
    yet; the next acknowledgement must queue behind it, not take the place of the one
    before it (which would deliver it ahead of the data)."""
    local, remote = _pair(SessionConfig(fair_queue=True))
    mixed = [tcp(1000 + 2696 * i, payload=b"d" * 100 if i % 3 == 1 else b"") for i in range(150)]
    delivered = _run(local, remote, mixed)
    assert local.statistics().fair_flows == 0  # (all sent by the end)
    assert [_acked(p) for p in delivered] == sorted(_acked(p) for p in delivered)
    assert [p for p in delivered if len(p) > 60] == [p for p in mixed if len(p) > 60]
    assert all(p in mixed for p in delivered)
    assert len(delivered) + local.statistics().acks_filtered == len(mixed)


def test_what_it_remembers_stays_bounded_over_many_flows() -> None:
    """Each flow's entry outlives its acknowledgement once that is sent: over 1500
    short flows the session keeps at most 1024 entries, and filtering goes on."""
    local, remote = _pair(SessionConfig())
    many = [tcp(1000, port=1024 + i) for i in range(1500)]
    delivered = _run(local, remote, many, gap=0.008)  # (12 s, each sent at once)
    assert local.statistics().acks_filtered == 0
    burst = [tcp(1000 + 2696 * i, port=999) for i in range(50)]
    delivered += _run(local, remote, burst, start=15.0)
    sent = many + burst
    assert len(local._ack_queued) <= 1024  # (memory, not behaviour)
    assert local.statistics().acks_filtered > 0
    assert len(delivered) + local.statistics().acks_filtered == len(sent)
