"""FEC (issue 7): XOR parity over groups of session sequence numbers; the codec in
isolation, then in the session over lossy rate-limited paths (fake time)."""

from __future__ import annotations

import random

import pytest

from braid.core.classify import TrafficClass
from braid.core.fec import FecDecoder, FecEncoder, Parity, choose_group_size
from braid.core.session import SessionConfig

from .ratenet import RateNet


def _decoder(**kwargs: object) -> FecDecoder:
    return FecDecoder(lambda item: item, **kwargs)  # type: ignore[arg-type]


def test_group_size_follows_loss() -> None:
    assert choose_group_size(0.0) == 0 and choose_group_size(0.001) == 0
    ks = [choose_group_size(p) for p in (0.005, 0.01, 0.02, 0.05)]
    assert ks == sorted(ks, reverse=True) and ks[0] > ks[-1] >= 2


@pytest.mark.parametrize("missing", [0, 1, 2, 3])
def test_rebuilds_one_missing_packet_of_any_length(missing: int) -> None:
    packets = [b"a" * 5, b"bb" * 40, b"", b"c" * 1400]
    enc = FecEncoder(4)
    parity = None
    for seq, p in enumerate(packets, start=100):
        parity = enc.add(seq, p, 0.0)
    assert parity is not None and parity.seqs == (100, 101, 102, 103)
    dec = _decoder()
    for seq, p in enumerate(packets, start=100):
        if seq - 100 != missing:
            assert dec.on_packet(seq, p) == []
    assert dec.on_parity(parity, 0.0) == [(100 + missing, packets[missing])]
    assert dec.recovered == 1


def test_parity_first_waits_for_members_and_no_rebuild_when_complete() -> None:
    enc = FecEncoder(3)
    parity = None
    for seq in range(3):
        parity = enc.add(seq, bytes([seq]) * 10, 0.0)
    assert parity is not None
    dec = _decoder()
    assert dec.on_parity(parity, 0.0) == []  # three missing: it waits
    assert dec.on_packet(0, bytes([0]) * 10) == []
    assert dec.on_packet(2, bytes([2]) * 10) == [(1, bytes([1]) * 10)]
    complete = _decoder()
    for seq in range(3):
        complete.on_packet(seq, bytes([seq]) * 10)
    assert complete.on_parity(parity, 0.0) == [] and complete.recovered == 0


def test_two_losses_unrecoverable_and_state_bounded() -> None:
    dec = _decoder(max_symbols=16, max_parities=4, timeout=0.5)
    dec.on_packet(0, b"x")
    assert dec.on_parity(Parity((0, 1, 2), 1, b"y"), 0.0) == []
    dec.expire(1.0)
    assert dec.unrecoverable == 1
    for n in range(10):
        dec.on_parity(Parity((1000 + 3 * n, 1001 + 3 * n, 1002 + 3 * n), 1, b"z"), 2.0)
    assert dec.unrecoverable == 1 + 6  # only 4 parities are kept
    for seq in range(100):
        dec.on_packet(seq, b"p")
    assert len(dec._symbols) == 16


def test_flush_closes_a_partial_group_and_a_lone_packet_is_not_a_parity() -> None:
    enc = FecEncoder(8)
    assert enc.add(1, b"abc", 0.0) is None
    assert enc.flush() is None  # one packet: its parity would be a copy
    enc.add(2, b"abc", 0.0)
    enc.add(3, b"de", 0.0)
    parity = enc.flush()
    assert parity is not None and parity.seqs == (2, 3) and enc.parities == 1
    dec = _decoder()
    dec.on_packet(2, b"abc")
    assert dec.on_parity(parity, 0.0) == [(3, b"de")]


def test_codec_residual_loss_with_5_percent_loss_below_half_percent() -> None:
    rng = random.Random(7)
    loss = 0.05
    enc = FecEncoder(choose_group_size(loss, target=0.002))
    dec = _decoder()
    delivered = 0
    total = 20000
    for n in range(total):
        packet = n.to_bytes(4, "big") * 40
        parity = enc.add(n, packet, 0.0)
        if rng.random() >= loss:
            delivered += 1
            dec.on_packet(n, packet)
        if parity is not None and rng.random() >= loss:
            dec.on_parity(parity, 0.0)
    assert (total - delivered - dec.recovered) / total < 0.005


def _voice(config: SessionConfig) -> RateNet:
    # 50 packets/s of 200 bytes over 2 x 2 Mbit/s, 20 ms, 5 % loss on every link direction.
    net = RateNet(
        {0: (250_000.0, 0.020), 1: (250_000.0, 0.020)},
        config=config,
        packet_size=200,
        source_rate=10_000,
    )
    for link in (*net.up.values(), *net.down.values()):
        link.loss = 0.05
    net.run_until(20.0)
    return net


def _residual(net: RateNet) -> float:
    return 1 - len(set(net.deliver_seqs)) / net.sent


def test_session_fec_rebuilds_lost_voice_packets() -> None:
    # equalize "off" and no header compression: equal paths (nothing to hold), and the
    # links' seeded loss falls on the same datagrams as when this test was written (no
    # FEATURES at path up).
    off = _voice(SessionConfig(equalize="off", compress_headers=False, nack=False))
    on = _voice(SessionConfig(fec="on", equalize="off", compress_headers=False, nack=False))
    stats = on.remote.statistics()
    assert _residual(off) > 0.03
    assert on.local.statistics().fec_group == 2  # sized from the measured 5 % loss
    assert stats.fec_recovered > 0.6 * off.remote.statistics().reorder.packets_skipped
    assert _residual(on) < 0.4 * _residual(off)
    # With NACK too: the few a parity cannot rebuild are resent.
    assert _residual(_voice(SessionConfig(fec="on", nack=True))) < 0.005


def test_redundant_scheduler_halves_and_more_the_voice_loss() -> None:
    # (Duplicates dropped at the egress still earn feedback: the slower copy's path
    # is not taken for silent.)
    net = _voice(SessionConfig(scheduler="redundant"))
    assert _residual(net) < 0.005
    assert all(p.state != "down" for p in net.local.statistics().paths)


def test_fec_per_class_and_auto_off_on_clean_links() -> None:
    voice = TrafficClass("voice", proto=frozenset({17}), fec=True)
    net = _voice(SessionConfig(classes=(voice,)))
    assert net.local.statistics().fec_parities > 100
    net = RateNet({0: (250_000.0, 0.020)}, config=SessionConfig(fec="auto"), source_rate=10_000)
    net.run_until(3.0)
    assert net.local.statistics().fec_parities == 0  # no loss measured: no overhead
    with pytest.raises(ValueError, match=r"^fec: must be one of off, auto, on"):
        SessionConfig(fec="x")


def test_path_mtu_black_hole_is_found_and_large_packets_fragmented() -> None:
    # Path 1 silently drops datagrams above 1300 bytes (no ICMP): its MTU is found by
    # probing, 1400-byte packets cross it in fragments, and nothing is lost.
    links = {0: (250_000.0, 0.010), 1: (250_000.0, 0.010)}
    net = RateNet(links, packet_size=1400)
    net.up[1].mtu = net.down[1].mtu = 1300
    net.run_until(4.0)
    local = net.local.statistics()
    remote = net.remote.statistics()
    mtus = {p.path_id: p.mtu for p in local.paths}
    assert mtus[0] == 1426 and 1300 - 16 <= (mtus[1] or 0) <= 1300
    assert local.fragmented > 100 and remote.reassembled >= local.fragmented - 20
    # Both links carry the flow, and every packet arrives exactly once. (Not all in order:
    # in this fake-time net the fragmented path's pacing probes run its link queue a few
    # ms behind the scheduler's estimate; the lab measures the effect on TCP.)
    assert net.goodput(2.0, 4.0) >= 0.85 * 500_000 * 1400 / (1426 + 42 + 16)
    seqs = net.deliver_seqs
    assert len(set(seqs)) == len(seqs)
    assert not set(range(max(seqs) - 100)) - set(seqs)  # (the last ones are in flight)


def test_path_mtu_is_confirmed_from_the_first_data_on_a_path() -> None:
    # An idle session never probes. Its first DATA, however small (a TCP SYN), starts the
    # probing of every path, those it does not use yet too, so the MTUs are confirmed
    # within a round trip and the bulk data that follows goes out whole on every path,
    # not in fragments for a round trip of each.
    links = {0: (250_000.0, 0.010), 1: (250_000.0, 0.020)}
    net = RateNet(links, packet_size=200, source_rate=0.0001)
    net.next_source = 1.0  # idle until 1 s, then one small packet
    net.run_until(0.99)
    assert {p.path_id: p.mtu for p in net.local.statistics().paths} == {0: 1208, 1: 1208}
    net.run_until(1.5)
    assert net.sent == 1
    assert {p.path_id: p.mtu for p in net.local.statistics().paths} == {0: 1426, 1: 1426}
    net.packet_size, net.source_rate = 1400, None  # now a saturating bulk source
    net.run_until(2.5)
    assert net.local.statistics().fragmented == 0
    assert net.goodput(2.0, 2.5) > 0.5 * 500_000 * 1400 / 1500  # (both paths carry it)
