"""Noise IKpsk2 handshake: published vectors, braid framing, and refusal of bad input."""

from __future__ import annotations

import hashlib
import json
import random
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from braid.core import handshake as hs
from braid.core.handshake import (
    CONSTRUCTION,
    HEADER_LEN,
    IDENTIFIER,
    INITIATION_LEN,
    MAC_LEN,
    RESPONSE_LEN,
    HandshakeError,
    Identity,
    NoiseIKpsk2,
    Peer,
    consume_initiation,
    consume_response,
    create_initiation,
    create_response,
    tai64n,
)
from braid.core.keys import SessionKeys, generate_private_key

VECTORS = Path(__file__).parent / "vectors"
NONCE = struct.Struct("<4xQ")
WALL = 1_700_000_000.0  # a Unix time for the timestamps


def rng_of(seed: int) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


def fixed(*chunks: bytes) -> Callable[[int], bytes]:
    """An rng that returns the given byte strings in order (for test vectors)."""
    queue = list(chunks)

    def take(n: int) -> bytes:
        chunk = queue.pop(0)
        assert len(chunk) == n
        return chunk

    return take


class Pair:
    """A local portal (initiator) and a remote portal (responder) that know each other."""

    def __init__(self, seed: int = 1, psk: bytes = hs.ZERO_PSK) -> None:
        rng = rng_of(seed)
        self.rng = rng
        self.local = Identity(generate_private_key(rng))
        self.remote = Identity(generate_private_key(rng))
        self.remote_as_peer = Peer(self.remote.public_key, preshared_key=psk)
        self.local_as_peer = Peer(self.local.public_key, preshared_key=psk)
        self.peers = {self.local.public_key: self.local_as_peer}

    def initiation(
        self,
        *,
        wall: float = WALL,
        now: float = 0.0,
        session_id: int = 0xA1B2C3D4,
        auth_only: bool = False,
    ) -> tuple[bytes, hs.PendingHandshake]:
        return create_initiation(
            identity=self.local,
            peer=self.remote_as_peer,
            session_id=session_id,
            key_id=7,
            path_id=2,
            wall_time=wall,
            now=now,
            rng=self.rng,
            auth_only=auth_only,
        )

    def consume(self, msg: bytes, *, now: float = 0.0) -> hs.Initiation:
        return consume_initiation(msg, identity=self.remote, peers=self.peers, now=now)


def remac(msg: bytes, key: bytes) -> bytes:
    """Recompute MAC1 of a modified message (anyone who knows the public key can)."""
    body = msg[: -2 * MAC_LEN]
    return body + hs.mac(key, body) + msg[-MAC_LEN:]


def assert_keys_match(a: SessionKeys, b: SessionKeys) -> None:
    header = bytes(16) + bytes(1)
    for sender, receiver in ((a, b), (b, a)):
        c = sender.claim(1, 0)
        sealed = sender.seal(header, b"payload", c)
        assert receiver.open(header, sealed, 1, 0) == b"payload"


# ---------------------------------------------------------------------------------------
# Published vectors and WireGuard's constants


def test_cacophony_vector_noise_ikpsk2_25519_chachapoly_blake2s() -> None:
    v = json.loads((VECTORS / "noise_ikpsk2_25519_chachapoly_blake2s.json").read_text())
    assert v["protocol_name"] == CONSTRUCTION.decode()
    x = bytes.fromhex
    psk = x(v["init_psks"][0])
    assert x(v["resp_psks"][0]) == psk
    init = NoiseIKpsk2(
        initiator=True,
        prologue=x(v["init_prologue"]),
        static_private=x(v["init_static"]),
        remote_static=x(v["init_remote_static"]),
    )
    resp = NoiseIKpsk2(
        initiator=False, prologue=x(v["resp_prologue"]), static_private=x(v["resp_static"])
    )
    m = v["messages"]
    msg0 = init.write_initiation(x(v["init_ephemeral"]), x(m[0]["payload"]))
    assert msg0.hex() == m[0]["ciphertext"]
    assert resp.read_initiation(msg0) == x(m[0]["payload"])
    assert resp.rs == hs._public_of(hs._private(x(v["init_static"])))
    msg1 = resp.write_response(x(v["resp_ephemeral"]), x(m[1]["payload"]), psk)
    assert msg1.hex() == m[1]["ciphertext"]
    assert init.read_response(msg1, psk) == x(m[1]["payload"])
    assert init.handshake_hash == resp.handshake_hash
    # Transport messages alternate, initiator first, each side counting nonces from 0.
    i_send, i_recv = init.split()
    r_send, r_recv = resp.split()
    assert (i_send, i_recv) == (r_recv, r_send)
    counters = [0, 0]
    for index, message in enumerate(m[2:]):
        side = index % 2
        key = (i_send, r_send)[side]
        ct = ChaCha20Poly1305(key).encrypt(NONCE.pack(counters[side]), x(message["payload"]), b"")
        counters[side] += 1
        assert ct.hex() == message["ciphertext"]


def test_wireguard_construction_and_identifier_hashes() -> None:
    # WireGuard's C_i = HASH(construction) and H_i = HASH(C_i || identifier), as published
    # in rustyguard (conradludgate/rustyguard, crates/rustyguard-crypto/src/prim.rs).
    construction_hash = bytes(
        (96, 226, 109, 174, 243, 39, 239, 192, 46, 195, 53, 226, 160, 37, 210, 208,
         22, 235, 66, 6, 248, 114, 119, 245, 45, 56, 209, 152, 139, 120, 205, 54)
    )  # fmt: skip
    identifier_hash = bytes(
        (34, 17, 179, 97, 8, 26, 197, 102, 105, 18, 67, 219, 69, 138, 213, 50,
         45, 156, 108, 102, 34, 147, 232, 183, 14, 225, 156, 101, 186, 7, 158, 243)
    )  # fmt: skip
    assert hs.hash_(CONSTRUCTION) == construction_hash
    assert hs.hash_(construction_hash, b"WireGuard v1 zx2c4 Jason@zx2c4.com") == identifier_hash


def test_primitives_are_the_specified_ones() -> None:
    # BLAKE2s-256("abc"), RFC 7693 appendix B.
    assert hs.hash_(b"a", b"bc").hex() == (
        "508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982"
    )
    # HMAC is RFC 2104 over BLAKE2s with a 64-byte block; keyed MAC is BLAKE2s(key=..., 16).
    key, data = b"k" * 32, b"data"
    inner = hashlib.blake2s(bytes(b ^ 0x36 for b in key.ljust(64, b"\0")) + data).digest()
    outer = hashlib.blake2s(bytes(b ^ 0x5C for b in key.ljust(64, b"\0")) + inner).digest()
    assert hs.hmac_(key, data) == outer
    assert hs.mac(key, data) == hashlib.blake2s(data, key=key, digest_size=16).digest()
    t1, t2, t3 = hs.hkdf(key, data, 3)
    temp = hs.hmac_(key, data)
    assert t1 == hs.hmac_(temp, b"\x01")
    assert t2 == hs.hmac_(temp, t1 + b"\x02")
    assert t3 == hs.hmac_(temp, t2 + b"\x03")


def test_tai64n() -> None:
    assert tai64n(0.0).hex() == "400000000000000a00000000"
    assert tai64n(1.5)[:8].hex() == "400000000000000b"
    # The nanoseconds lose their low 24 bits (16.8 ms), as in WireGuard.
    assert tai64n(10.001) == tai64n(10.0)
    assert tai64n(10.02) > tai64n(10.0)
    assert tai64n(WALL + 1) > tai64n(WALL)


# ---------------------------------------------------------------------------------------
# braid's framing, re-derived independently


def test_initiation_and_response_match_an_independent_derivation() -> None:
    pair = Pair(seed=3)
    e_i, e_r = bytes(range(32)), bytes(range(32, 64))
    msg, pending = create_initiation(
        identity=pair.local,
        peer=pair.remote_as_peer,
        session_id=0x01020304,
        key_id=9,
        path_id=4,
        wall_time=WALL,
        now=1.0,
        rng=fixed(e_i),
        auth_only=True,
    )
    header = bytes([3, 5, 0, 4, 1, 2, 3, 4])
    noise = NoiseIKpsk2(
        initiator=True,
        prologue=b"braid v2 multipath bonding tunnel",
        static_private=pair.local.private_key,
        remote_static=pair.remote.public_key,
    )
    payload = header + tai64n(WALL) + bytes([9, 1, 0, 0])
    body = header + noise.write_initiation(e_i, payload)
    mac1_key = hashlib.blake2s(b"mac1----" + pair.remote.public_key).digest()
    mac1 = hashlib.blake2s(body, key=mac1_key, digest_size=16).digest()
    assert msg == body + mac1 + bytes(16)
    assert len(msg) == INITIATION_LEN == 160
    assert pending.mac1 == mac1

    init = pair.consume(msg)
    assert (init.session_id, init.key_id, init.path_id, init.auth_only) == (0x01020304, 9, 4, True)
    resp, r_keys = create_response(init, now=1.0, rng=fixed(e_r))
    assert len(resp) == RESPONSE_LEN == 96
    r_header = bytes([3, 6, 0, 4, 1, 2, 3, 4])
    resp_noise = NoiseIKpsk2(
        initiator=False, prologue=IDENTIFIER, static_private=pair.remote.private_key
    )
    resp_noise.read_initiation(msg[HEADER_LEN : -2 * MAC_LEN])
    r_body = r_header + resp_noise.write_response(e_r, r_header, hs.ZERO_PSK)
    l_mac1_key = hashlib.blake2s(b"mac1----" + pair.local.public_key).digest()
    r_mac1 = hashlib.blake2s(r_body, key=l_mac1_key, digest_size=16).digest()
    assert resp == r_body + r_mac1 + bytes(16)
    i_keys = consume_response(resp, pending, identity=pair.local, now=1.0)
    assert i_keys.auth_only and r_keys.auth_only
    assert (i_keys.key_id, r_keys.key_id) == (9, 9)
    assert_keys_match(i_keys, r_keys)


def test_full_handshake_gives_matching_keys_and_roles() -> None:
    pair = Pair(seed=4, psk=b"\x42" * 32)
    msg, pending = pair.initiation(now=5.0)
    init = pair.consume(msg, now=5.0)
    assert init.peer is pair.local_as_peer
    resp, r_keys = create_response(init, now=5.0, rng=pair.rng)
    i_keys = consume_response(resp, pending, identity=pair.local, now=5.25)
    assert i_keys.is_initiator and i_keys.confirmed
    assert not r_keys.is_initiator and not r_keys.confirmed
    assert not i_keys.auth_only
    assert (i_keys.created_at, r_keys.created_at) == (5.25, 5.0)
    assert_keys_match(i_keys, r_keys)
    assert r_keys.confirmed  # it opened a datagram from the initiator


def test_each_handshake_gives_fresh_keys() -> None:
    pair = Pair(seed=5)
    keys = []
    for i in range(2):
        msg, pending = pair.initiation(wall=WALL + i, now=float(i))
        resp, _ = create_response(pair.consume(msg, now=float(i)), now=float(i), rng=pair.rng)
        keys.append(consume_response(resp, pending, identity=pair.local, now=float(i)))
    header = bytes(17)
    c = keys[0].claim(0, 0)
    assert keys[0].seal(header, b"x", c) != keys[1].seal(header, b"x", keys[1].claim(0, 0))


# ---------------------------------------------------------------------------------------
# Refusals


def test_wrong_responder_key_is_rejected_by_mac1() -> None:
    pair = Pair(seed=6)
    stranger = Identity(generate_private_key(pair.rng))
    msg, _ = create_initiation(
        identity=pair.local,
        peer=Peer(stranger.public_key),
        session_id=1,
        key_id=0,
        path_id=0,
        wall_time=WALL,
        now=0.0,
        rng=pair.rng,
    )
    with pytest.raises(HandshakeError) as err:
        pair.consume(msg)
    assert err.value.reason == "bad_mac1"
    # With MAC1 recomputed for the real responder, the Noise layer refuses it (e, s were
    # encrypted to another static key).
    with pytest.raises(HandshakeError) as err:
        pair.consume(remac(msg, pair.remote.mac1_key))
    assert err.value.reason == "decrypt"


def test_unknown_initiator_is_refused() -> None:
    pair = Pair(seed=7)
    intruder = Identity(generate_private_key(pair.rng))
    msg, _ = create_initiation(
        identity=intruder,
        peer=pair.remote_as_peer,
        session_id=1,
        key_id=0,
        path_id=0,
        wall_time=WALL,
        now=0.0,
        rng=pair.rng,
    )
    with pytest.raises(HandshakeError) as err:
        pair.consume(msg)
    assert err.value.reason == "unknown_peer"


def test_replayed_and_older_initiations_are_refused() -> None:
    pair = Pair(seed=8)
    first, _ = pair.initiation(wall=WALL, now=0.0)
    older, _ = pair.initiation(wall=WALL - 60, now=0.0)
    same_tick, _ = pair.initiation(wall=WALL + 0.001, now=0.0)  # same whitened timestamp
    newer, _ = pair.initiation(wall=WALL + 1, now=0.0)
    pair.consume(first, now=10.0)
    for msg in (first, older, same_tick):
        with pytest.raises(HandshakeError) as err:
            pair.consume(msg, now=20.0)
        assert err.value.reason == "replayed_timestamp"
    assert pair.consume(newer, now=20.0).timestamp == tai64n(WALL + 1)
    with pytest.raises(HandshakeError) as err:  # the replay stays refused afterwards
        pair.consume(newer, now=30.0)
    assert err.value.reason == "replayed_timestamp"


def test_initiations_from_one_peer_are_limited_to_fifty_per_second() -> None:
    pair = Pair(seed=9)
    a, _ = pair.initiation(wall=WALL)
    b, _ = pair.initiation(wall=WALL + 1)
    c, _ = pair.initiation(wall=WALL + 2)
    pair.consume(a, now=1.0)
    with pytest.raises(HandshakeError) as err:
        pair.consume(b, now=1.01)
    assert err.value.reason == "flood"
    pair.consume(c, now=1.03)


def test_psk_mismatch_fails_at_the_initiator() -> None:
    pair = Pair(seed=10, psk=b"\x01" * 32)
    pair.local_as_peer.preshared_key = b"\x02" * 32  # the responder's idea of the PSK
    msg, pending = pair.initiation()
    resp, _ = create_response(pair.consume(msg), now=0.0, rng=pair.rng)
    with pytest.raises(HandshakeError) as err:
        consume_response(resp, pending, identity=pair.local, now=0.0)
    assert err.value.reason == "decrypt"


def test_psk_on_one_side_only_fails() -> None:
    pair = Pair(seed=11)
    pair.remote_as_peer.preshared_key = b"\x07" * 32
    msg, pending = pair.initiation()
    resp, _ = create_response(pair.consume(msg), now=0.0, rng=pair.rng)
    with pytest.raises(HandshakeError):
        consume_response(resp, pending, identity=pair.local, now=0.0)


def test_response_to_another_initiation_fails_and_keeps_pending_usable() -> None:
    pair = Pair(seed=12)
    msg1, _ = pair.initiation(wall=WALL)
    msg2, pending2 = pair.initiation(wall=WALL + 1)
    resp1, _ = create_response(pair.consume(msg1, now=0.0), now=0.0, rng=pair.rng)
    resp2, keys2 = create_response(pair.consume(msg2, now=1.0), now=1.0, rng=pair.rng)
    with pytest.raises(HandshakeError) as err:
        consume_response(resp1, pending2, identity=pair.local, now=1.0)
    assert err.value.reason == "decrypt"
    assert_keys_match(consume_response(resp2, pending2, identity=pair.local, now=1.0), keys2)


def test_response_for_another_session_is_refused_before_any_dh(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pair = Pair(seed=13)
    msg, pending = pair.initiation(session_id=5)
    resp, _ = create_response(pair.consume(msg), now=0.0, rng=pair.rng)
    calls = count_dh(monkeypatch)
    forged = remac(resp[:4] + struct.pack(">I", 6) + resp[8:], pair.local.mac1_key)
    with pytest.raises(HandshakeError) as err:
        consume_response(forged, pending, identity=pair.local, now=0.0)
    assert err.value.reason == "session_mismatch"
    assert calls == [0]


def test_mode_refused_when_peer_requires_encryption() -> None:
    pair = Pair(seed=14)
    pair.local_as_peer.allow_auth_only = False
    msg, _ = pair.initiation(auth_only=True)
    with pytest.raises(HandshakeError) as err:
        pair.consume(msg)
    assert err.value.reason == "mode_refused"
    msg, _ = pair.initiation(wall=WALL + 1)
    assert not pair.consume(msg, now=1.0).auth_only


@pytest.mark.parametrize(
    ("offset", "value", "reason"),
    [(0, 1, "bad_version"), (1, 6, "bad_type"), (2, 1, "bad_flags")],
)
def test_bad_header_fields(offset: int, value: int, reason: str) -> None:
    pair = Pair(seed=15)
    msg, _ = pair.initiation()
    bad = bytearray(msg)
    bad[offset] = value
    with pytest.raises(HandshakeError) as err:
        pair.consume(bytes(bad))
    assert err.value.reason == reason


@pytest.mark.parametrize("length", [0, 1, 8, 40, INITIATION_LEN - 1, INITIATION_LEN + 1, 1400])
def test_bad_lengths(length: int) -> None:
    pair = Pair(seed=16)
    msg, _ = pair.initiation()
    data = (msg * 10)[:length]
    with pytest.raises(HandshakeError) as err:
        pair.consume(data)
    assert err.value.reason in ("bad_length", "bad_version", "bad_type", "bad_flags")


def count_dh(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the Diffie-Hellman operations from now on (the real function still runs)."""
    calls = [0]
    real = hs._dh

    def spy(private: X25519PrivateKey, public: bytes) -> bytes:
        calls[0] += 1
        return real(private, public)

    monkeypatch.setattr(hs, "_dh", spy)
    return calls


def test_mac1_rejects_garbage_without_any_dh(monkeypatch: pytest.MonkeyPatch) -> None:
    pair = Pair(seed=17)
    calls = count_dh(monkeypatch)
    rnd = random.Random(17)
    header = bytes([3, 5, 0, 0]) + bytes(4)
    for _ in range(2000):
        garbage = header + rnd.randbytes(INITIATION_LEN - HEADER_LEN)
        with pytest.raises(HandshakeError) as err:
            pair.consume(garbage)
        assert err.value.reason == "bad_mac1"
    assert calls == [0]
    msg, _ = pair.initiation()
    calls[0] = 0
    pair.consume(msg)
    assert calls[0] == 2  # es and ss (the response will add ee and se)


def test_every_bit_flip_of_an_initiation_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    pair = Pair(seed=18)
    msg, _ = pair.initiation()
    mac2_start = INITIATION_LEN - MAC_LEN
    for bit in range(mac2_start * 8):
        bad = bytearray(msg)
        bad[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(HandshakeError):
            pair.consume(bytes(bad))
    # An attacker knowing the responder's public key can recompute MAC1; the Noise layer
    # still refuses every change to the header or the body.
    for bit in range((INITIATION_LEN - 2 * MAC_LEN) * 8):
        bad = bytearray(msg)
        bad[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(HandshakeError) as err:
            pair.consume(remac(bytes(bad), pair.remote.mac1_key))
        assert err.value.reason != "bad_mac1"
    # None of this moved the peer's state: the genuine message is still accepted.
    assert pair.consume(msg).session_id == 0xA1B2C3D4


def test_every_bit_flip_of_a_response_is_refused() -> None:
    pair = Pair(seed=19)
    msg, pending = pair.initiation()
    resp, r_keys = create_response(pair.consume(msg), now=0.0, rng=pair.rng)
    for bit in range(RESPONSE_LEN * 8):
        for resign in (False, True):
            bad = bytearray(resp)
            bad[bit // 8] ^= 1 << (bit % 8)
            forged = bytes(bad)
            if resign and bit < (RESPONSE_LEN - 2 * MAC_LEN) * 8:
                forged = remac(forged, pair.local.mac1_key)
            with pytest.raises(HandshakeError):
                consume_response(forged, pending, identity=pair.local, now=0.0)
    assert_keys_match(consume_response(resp, pending, identity=pair.local, now=0.0), r_keys)


def test_low_order_ephemeral_key_is_refused_cleanly() -> None:
    pair = Pair(seed=20)
    msg, _ = pair.initiation()
    bad = msg[:HEADER_LEN] + bytes(32) + msg[HEADER_LEN + 32 :]  # the identity point
    with pytest.raises(HandshakeError) as err:
        pair.consume(remac(bad, pair.remote.mac1_key))
    assert err.value.reason == "bad_key"


def test_fuzz_only_handshake_errors_escape() -> None:
    pair = Pair(seed=21)
    msg, pending = pair.initiation()
    resp, _ = create_response(pair.consume(msg), now=0.0, rng=pair.rng)
    rnd = random.Random(21)
    seeds = (msg, resp)
    accepted = 0
    for i in range(10_000):
        base = bytearray(seeds[i % 2])
        mode = rnd.randrange(4)
        if mode == 0:
            data = rnd.randbytes(rnd.choice((0, 8, 40, INITIATION_LEN, RESPONSE_LEN, 300)))
        else:
            for _ in range(rnd.randint(1, 4)):
                base[rnd.randrange(len(base))] = rnd.randrange(256)
            if mode == 2:
                del base[rnd.randrange(len(base)) :]
            data = bytes(base)
            if mode == 3 and len(data) > 2 * MAC_LEN:
                key = pair.remote.mac1_key if data[1:2] == b"\x05" else pair.local.mac1_key
                data = remac(data, key)
        if data in seeds:
            continue  # the mutation wrote back the same bytes
        try:
            pair.consume(data, now=float(i))
            accepted += 1
        except HandshakeError:
            pass
        try:
            consume_response(data, pending, identity=pair.local, now=float(i))
            accepted += 1
        except HandshakeError:
            pass
    assert accepted == 0


def test_retry_schedule_backs_off_with_jitter() -> None:
    retry = hs.HandshakeRetry(rng_of(30))
    assert not retry.due(0.0) and retry.deadline() is None
    retry.start(10.0)
    assert retry.due(10.0)
    gaps = []
    now = 10.0
    for _ in range(7):
        assert retry.due(now)
        retry.sent(now)
        deadline = retry.deadline()
        assert deadline is not None and not retry.due(now)
        gaps.append(deadline - now)
        now = deadline
    bases = [1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0]
    for gap, base in zip(gaps, bases, strict=True):
        assert base <= gap <= base * (1 + hs.RETRY_JITTER)
    assert retry.attempts == 7
    retry.start(now)  # already trying: no reset
    assert retry.attempts == 7
    retry.succeeded()
    assert retry.deadline() is None and not retry.due(now + 100)
    retry.start(now + 100)
    assert retry.due(now + 100) and retry.attempts == 0
