"""Tests for the XOR FEC encoder/decoder (issue 7)."""

from __future__ import annotations

import random

from braid.core.fec import FecDecoder, FecEncoder, Parity, choose_group_size


def _send(
    enc: FecEncoder, packets: list[bytes]
) -> tuple[list[tuple[int, int, bytes]], list[Parity]]:
    data: list[tuple[int, int, bytes]] = []
    parities: list[Parity] = []
    for p in packets:
        g, i, par = enc.add(p)
        data.append((g, i, p))
        if par is not None:
            parities.append(par)
    return data, parities


def test_group_size_off_on_clean_link_and_shrinks_with_loss() -> None:
    assert choose_group_size(0.0) == 0
    k2 = choose_group_size(0.02)
    k5 = choose_group_size(0.05)
    assert k2 >= 2 and k5 >= 2
    assert k5 <= k2


def test_rebuilds_one_missing_packet_of_each_length() -> None:
    rng = random.Random(1)
    packets = [rng.randbytes(rng.randint(1, 1400)) for _ in range(4)]
    for lost in range(4):
        enc = FecEncoder(4)
        data, parities = _send(enc, packets)
        assert len(parities) == 1
        dec = FecDecoder()
        out: list[tuple[int, bytes]] = []
        for g, i, p in data:
            if i != lost:
                out += dec.on_packet(g, i, p, 0.0)
        out += dec.on_parity(parities[0], 0.0)
        assert out == [(lost, packets[lost])]
        assert dec.recovered == 1


def test_parity_before_data_and_no_rebuild_when_complete() -> None:
    packets = [b"a" * 10, b"bb" * 7, b"c"]
    enc = FecEncoder(3)
    data, parities = _send(enc, packets)
    dec = FecDecoder()
    assert dec.on_parity(parities[0], 0.0) == []
    assert dec.on_packet(*data[0][:2], data[0][2], 0.0) == []
    assert dec.on_packet(*data[2][:2], data[2][2], 0.0) == [(1, packets[1])]
    # The late original is ignored (no duplicate delivery).
    assert dec.on_packet(*data[1][:2], data[1][2], 0.0) == []

    dec2 = FecDecoder()
    for g, i, p in data:
        assert dec2.on_packet(g, i, p, 0.0) == []
    assert dec2.on_parity(parities[0], 0.0) == []
    assert dec2.recovered == 0


def test_two_losses_unrecoverable_and_expiry_bounds_state() -> None:
    enc = FecEncoder(4)
    data, parities = _send(enc, [bytes([i]) * 20 for i in range(4)])
    dec = FecDecoder(max_groups=8, timeout=0.5)
    for g, i, p in data[:2]:
        dec.on_packet(g, i, p, 0.0)
    assert dec.on_parity(parities[0], 0.0) == []
    dec.expire(1.0)
    assert dec.unrecoverable == 1
    for grp in range(100):
        dec.on_packet(grp + 10, 0, b"x", 2.0)
    assert len(dec._groups) <= 8


def test_off_encoder_emits_nothing_and_flush_closes_partial_group() -> None:
    enc = FecEncoder(0)
    assert enc.add(b"abc") == (0, -1, None)
    enc.set_group_size(8)
    enc.add(b"abc")
    enc.add(b"de")
    par = enc.flush()
    assert par is not None and par.count == 2
    dec = FecDecoder()
    dec.on_packet(0, 0, b"abc", 0.0)
    assert dec.on_parity(par, 0.0) == [(1, b"de")]


def test_residual_loss_with_5_percent_random_loss_below_half_percent() -> None:
    rng = random.Random(7)
    loss = 0.05
    k = choose_group_size(loss, target=0.002)
    enc = FecEncoder(k)
    dec = FecDecoder()
    delivered = 0
    total = 20000
    for n in range(total):
        g, i, par = enc.add(n.to_bytes(4, "big") * 40)
        if rng.random() >= loss:
            delivered += 1
            dec.on_packet(g, i, n.to_bytes(4, "big") * 40, 0.0)
        if par is not None and rng.random() >= loss:
            dec.on_parity(par, 0.0)
    residual = (total - delivered - dec.recovered) / total
    assert residual < 0.005, (k, residual)
