"""Session keys: key text form, AEAD seal/open, replay, nonces and rotation with fake time."""

from __future__ import annotations

import heapq
import random
import shutil
import struct
import subprocess
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from braid.core import keys as k
from braid.core.handshake import (
    Identity,
    Peer,
    consume_initiation,
    consume_response,
    create_initiation,
    create_response,
)
from braid.core.keys import (
    REJECT_AFTER_TIME,
    REKEY_AFTER_TIME,
    CryptoError,
    KeyRing,
    SessionKeys,
    decode_key,
    encode_key,
    generate_private_key,
    public_key,
)

WALL = 1_700_000_000.0


def rng_of(seed: int) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


_NUMBERS: dict[int, int] = {}


def header(path_id: int = 1, session_id: int = 0xABCDEF01, seq: int | None = None) -> bytes:
    """A clear common header; `seq` None: the path's next number (as the session gives)."""
    if seq is None:
        seq = _NUMBERS.get(path_id, 0)
        _NUMBERS[path_id] = (seq + 1) & 0xFFFFFFFF
    return struct.pack(">BBBBIII", 3, 1, 0, path_id, session_id, seq, 1234)


def key_pair(
    *, auth_only: bool = False, seed: int = 1, now: float = 0.0
) -> tuple[SessionKeys, SessionKeys]:
    rnd = random.Random(seed)
    a, b = rnd.randbytes(32), rnd.randbytes(32)
    init = SessionKeys(a, b, key_id=3, created_at=now, is_initiator=True, auth_only=auth_only)
    resp = SessionKeys(b, a, key_id=3, created_at=now, is_initiator=False, auth_only=auth_only)
    return init, resp


# ---------------------------------------------------------------------------------------
# Static keys


def test_x25519_public_keys_rfc7748() -> None:
    alice = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    bob = bytes.fromhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
    assert public_key(alice).hex() == (
        "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
    )
    assert public_key(bob).hex() == (
        "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"
    )


def test_chacha20poly1305_rfc8439_aead_vector() -> None:
    key = bytes(range(0x80, 0xA0))
    nonce = bytes.fromhex("070000004041424344454647")
    aad = bytes.fromhex("50515253c0c1c2c3c4c5c6c7")
    plaintext = (
        b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for "
        b"the future, sunscreen would be it."
    )
    sealed = ChaCha20Poly1305(key).encrypt(nonce, plaintext, aad)
    assert sealed[:-16].hex() == (
        "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6"
        "3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36"
        "92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc"
        "3ff4def08e4b7a9de576d26586cec64b6116"
    )
    assert sealed[-16:].hex() == "1ae10b594f09e26a7e902ecbd0600691"


def test_generate_private_key_is_clamped_like_wg_genkey() -> None:
    for seed in range(50):
        key = generate_private_key(rng_of(seed))
        assert len(key) == 32
        assert key[0] & 7 == 0
        assert key[31] & 0x80 == 0 and key[31] & 0x40
    assert generate_private_key(rng_of(1)) == generate_private_key(rng_of(1))
    assert generate_private_key(lambda n: b"\xff" * n)[0] == 0xF8


def test_text_form_round_trip() -> None:
    key = generate_private_key(rng_of(2))
    text = encode_key(key)
    assert len(text) == 44 and text.endswith("=")
    assert decode_key(text) == key
    assert decode_key("  " + text + "\n") == key


@pytest.mark.parametrize(
    "text",
    ["", "abc", "A" * 44, "A" * 43 + "=" * 2, "!" * 43 + "=", encode_key(bytes(32))[:-1], "é" * 44],
)
def test_decode_key_refuses_bad_text_with_one_line(text: str) -> None:
    with pytest.raises(ValueError) as err:
        decode_key(text)
    assert "\n" not in str(err.value)
    assert "braid genkey" in str(err.value)


@pytest.mark.skipif(shutil.which("wg") is None, reason="wireguard-tools (wg) not installed")
def test_text_form_is_identical_to_wg() -> None:
    ours = generate_private_key(rng_of(3))
    out = subprocess.run(
        ["wg", "pubkey"], input=encode_key(ours) + "\n", capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == encode_key(public_key(ours))
    theirs = subprocess.run(["wg", "genkey"], capture_output=True, text=True, check=True).stdout
    raw = decode_key(theirs)
    assert raw[0] & 7 == 0 and raw[31] & 0xC0 == 0x40  # wg clamps as we do


# ---------------------------------------------------------------------------------------
# One keypair


@pytest.mark.parametrize("auth_only", [False, True])
def test_seal_open_round_trip(auth_only: bool) -> None:
    init, resp = key_pair(auth_only=auth_only)
    payload = bytes(range(256)) * 5
    hdr = header(seq=0) + b"\x03"
    c = init.claim(1, 0)
    body = init.seal(hdr, payload, c)
    assert len(body) == len(payload) + 16
    if auth_only:
        assert body[:-16] == payload  # in clear
    else:
        assert payload[:64] not in body
    assert resp.open(hdr, body, 1, 0) == payload
    assert resp.messages_received == 1 and init.messages_sent == 1


@pytest.mark.parametrize("auth_only", [False, True])
def test_wrong_key_header_or_number_fails(auth_only: bool) -> None:
    init, resp = key_pair(auth_only=auth_only)
    other, _ = key_pair(auth_only=auth_only, seed=2)
    hdr = header(seq=5) + b"\x03"
    c = init.claim(1, 5)
    body = init.seal(hdr, b"hello", c)
    for hdr2, body2, path, seq in (
        (hdr, other.seal(hdr, b"hello", c), 1, 5),  # another key
        (header(session_id=1, seq=5) + b"\x03", body, 1, 5),  # another header
        (hdr, body, 1, 6),  # another number
        (hdr, body, 2, 5),  # another path
    ):
        with pytest.raises(CryptoError) as err:
            resp.open(hdr2, body2, path, seq)
        assert err.value.reason == "auth"
    assert resp.open(hdr, body, 1, 5) == b"hello"


def test_auth_only_and_encrypted_do_not_interoperate() -> None:
    enc, _ = key_pair(auth_only=False)
    _, auth = key_pair(auth_only=True)
    hdr = header(seq=0) + b"\x03"
    c = enc.claim(0, 0)
    with pytest.raises(CryptoError):
        auth.open(hdr, enc.seal(hdr, b"x" * 40, c), 0, 0)


def test_a_nonce_is_claimed_once_per_path_and_numbers_only_move_on() -> None:
    """The nonce is the path id and its path_seq: unique across paths; a number not after
    the last sealed on its path (by less than 2^31, modulo 2^32) is refused
    (`counter_reuse`), so a nonce is never sealed twice whatever the session numbers;
    numbers may skip (a datagram that was not sealed) and wrap past 2^32; a path's
    numbering may advance by less than 2^32 - 2^16 under one keypair (`exhausted`)."""
    init, _ = key_pair()
    seen = set()
    for seq in range(100):
        for path in (0, 1, 254):
            c = init.claim(path, seq)
            assert c >> 32 == path and c & 0xFFFFFFFF == seq
            assert c not in seen
            seen.add(c)
    for path, seq in ((0, 99), (0, 50), (0, 99 + 2**31), (1, 0)):
        with pytest.raises(CryptoError) as err:
            init.claim(path, seq)
        assert err.value.reason == "counter_reuse"
    assert init.claim(0, 105) == k.nonce_counter(0, 105)  # (a skip)
    assert init.claim(7, 2**32 - 1) == k.nonce_counter(7, 2**32 - 1)
    assert init.claim(7, 3) == k.nonce_counter(7, 3)  # (wrapped)
    assert init.max_path_counter() == 105
    init.claim(9, 0)
    init._used[9] = k.REJECT_AFTER_MESSAGES_PER_PATH - 1
    with pytest.raises(CryptoError) as err:
        init.claim(9, 1)
    assert err.value.reason == "exhausted"


def test_replay_window_per_path() -> None:
    init, resp = key_pair()
    sealed = []
    start = 2**32 - 5000  # (the numbers wrap on the way)
    for i in range(10000):
        seq = (start + i) & 0xFFFFFFFF
        hdr = header(seq=seq) + b"\x03"
        sealed.append((hdr, seq, init.seal(hdr, b"p", init.claim(1, seq))))
    hdr2 = header(path_id=2, seq=0) + b"\x03"
    other_path = (hdr2, init.seal(hdr2, b"q", init.claim(2, 0)))
    # Deliver out of order within the window: all accepted once.
    order = list(range(9000, 10000)) + list(range(1808, 9000))
    for i in order:
        hdr, seq, body = sealed[i]
        assert resp.open(hdr, body, 1, seq) == b"p"
    for i in (9999, 5000, 1808):  # duplicates
        hdr, seq, body = sealed[i]
        with pytest.raises(CryptoError) as err:
            resp.open(hdr, body, 1, seq)
        assert err.value.reason == "replay"
    with pytest.raises(CryptoError) as err:  # older than the 8192-wide window
        hdr, seq, body = sealed[1807]
        resp.open(hdr, body, 1, seq)
    assert err.value.reason == "replay"
    # Path 2's number 0 is far from path 1's, yet new on its own window.
    assert resp.open(hdr2, other_path[1], 2, 0) == b"q"


def test_forgery_does_not_move_the_replay_window() -> None:
    init, resp = key_pair()
    hdr = header(seq=7) + b"\x03"
    body = init.seal(hdr, b"real", init.claim(1, 7))
    far = header(seq=7 + 10**9) + b"\x03"
    with pytest.raises(CryptoError) as err:
        resp.open(far, b"\0" * 40, 1, 7 + 10**9)
    assert err.value.reason == "auth"
    assert resp.open(hdr, body, 1, 7) == b"real"  # still inside the window
    assert not resp.confirmed or resp.messages_received == 1


def test_auth_only_short_body() -> None:
    _, resp = key_pair(auth_only=True)
    with pytest.raises(CryptoError) as err:
        resp.open(header(seq=0) + b"\x03", b"short", 1, 0)
    assert err.value.reason == "truncated"


# ---------------------------------------------------------------------------------------
# Datagrams through a KeyRing


def rings(*, auth_only: bool = False, now: float = 0.0) -> tuple[KeyRing, KeyRing]:
    a, b = KeyRing(is_initiator=True), KeyRing(is_initiator=False)
    i_keys, r_keys = key_pair(auth_only=auth_only, now=now)
    a.install(i_keys, now=now)
    b.install(r_keys, now=now)
    # The initiator's first datagram confirms the keys to the responder.
    assert b.open_datagram(a.seal_datagram(header(), b"", now=now), now=now) == b""
    assert b.current is r_keys
    return a, b


@pytest.mark.parametrize("auth_only", [False, True])
def test_every_bit_flip_of_a_datagram_is_refused(auth_only: bool) -> None:
    a, b = rings(auth_only=auth_only)
    body = bytes(range(40))
    data = a.seal_datagram(header(path_id=3), body, now=1.0)
    assert len(data) == 16 + 1 + len(body) + 16
    reasons: dict[str, int] = {}
    for bit in range(len(data) * 8):
        bad = bytearray(data)
        bad[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(CryptoError) as err:
            b.open_datagram(bytes(bad), now=1.0)
        reasons[err.value.reason] = reasons.get(err.value.reason, 0) + 1
    assert set(reasons) <= {"auth", "unknown_key", "replay"}
    assert reasons["unknown_key"] == 8  # the key id byte
    assert b.open_datagram(data, now=1.0) == body
    with pytest.raises(CryptoError) as err:
        b.open_datagram(data, now=1.0)
    assert err.value.reason == "replay"


def test_truncated_datagrams() -> None:
    a, b = rings()
    data = a.seal_datagram(header(), b"", now=0.0)
    assert b.open_datagram(data, now=0.0) == b""
    for n in range(len(data)):
        with pytest.raises(CryptoError):
            b.open_datagram(data[:n], now=0.0)


def test_responder_sends_only_after_confirmation() -> None:
    a, b = KeyRing(is_initiator=True), KeyRing(is_initiator=False)
    i_keys, r_keys = key_pair(now=0.0)
    b.install(r_keys, now=0.0)
    assert b.send_keys(now=0.0) is None
    with pytest.raises(CryptoError) as err:
        b.seal_datagram(header(), b"x", now=0.0)
    assert err.value.reason == "no_key"
    a.install(i_keys, now=0.1)
    assert b.open_datagram(a.seal_datagram(header(), b"hi", now=0.1), now=0.2) == b"hi"
    assert b.current is r_keys and b.next is None and r_keys.confirmed
    assert a.open_datagram(b.seal_datagram(header(), b"yo", now=0.2), now=0.3) == b"yo"


def test_keys_expire_after_reject_after_time() -> None:
    a, b = rings(now=0.0)
    early = a.seal_datagram(header(), b"x", now=REJECT_AFTER_TIME - 1)
    with pytest.raises(CryptoError) as err:
        a.seal_datagram(header(), b"x", now=REJECT_AFTER_TIME)
    assert err.value.reason == "no_key"
    with pytest.raises(CryptoError) as err:
        b.open_datagram(early, now=REJECT_AFTER_TIME)
    assert err.value.reason == "unknown_key"
    assert a.get_timer() == REKEY_AFTER_TIME
    a.handle_timer(now=REJECT_AFTER_TIME)
    b.handle_timer(now=REJECT_AFTER_TIME)
    assert a.current is None and b.current is None
    assert a.get_timer() is None and b.get_timer() is None


def test_rekey_schedule() -> None:
    a, b = rings(now=10.0)
    assert not a.needs_rekey(now=10.0 + REKEY_AFTER_TIME - 0.001)
    assert a.needs_rekey(now=10.0 + REKEY_AFTER_TIME)
    assert not b.needs_rekey(now=1000.0)  # only the initiator (local portal) rekeys
    counted = KeyRing(is_initiator=True, rekey_after_messages=10)
    counted.install(key_pair()[0], now=0.0)
    for _ in range(9):
        counted.seal_datagram(header(), b"", now=0.0)
    assert not counted.needs_rekey(now=0.0)
    counted.seal_datagram(header(), b"", now=0.0)
    assert counted.needs_rekey(now=0.0)
    assert KeyRing(is_initiator=True).needs_rekey(now=0.0)  # no keys yet


def test_allocate_key_id_skips_held_ids_and_wraps() -> None:
    ring = KeyRing(is_initiator=True, first_key_id=254)
    assert ring.allocate_key_id() == 254
    ring.install(
        SessionKeys(bytes(32), bytes(32), key_id=255, created_at=0, is_initiator=True), now=0
    )
    assert ring.allocate_key_id() == 0  # 255 is held
    assert ring.allocate_key_id() == 1


def test_previous_keys_open_during_the_grace_window_only() -> None:
    a, b = rings(now=0.0)
    old = a.seal_datagram(header(path_id=1), b"old", now=100.0)
    old2 = a.seal_datagram(header(path_id=1), b"old2", now=100.0)
    new_i, new_r = key_pair(seed=9, now=100.0)
    new_i.key_id = new_r.key_id = 4
    b.install(new_r, now=100.0)
    a.install(new_i, now=100.5)
    first_new = a.seal_datagram(header(path_id=0), b"new", now=100.5)
    assert a.current is new_i and a.previous is not None
    assert b.open_datagram(first_new, now=100.6) == b"new"
    assert b.current is new_r and b.previous is not None
    # A datagram sealed with the old keys, delayed on a slow path, still opens...
    assert b.open_datagram(old, now=101.0) == b"old"
    assert b.get_timer() == pytest.approx(100.6 + k.PREVIOUS_KEY_GRACE)
    # ...but not once the grace window is over.
    with pytest.raises(CryptoError) as err:
        b.open_datagram(old2, now=100.6 + k.PREVIOUS_KEY_GRACE)
    assert err.value.reason == "unknown_key"
    b.handle_timer(now=100.6 + k.PREVIOUS_KEY_GRACE)
    assert b.previous is None
    stats = b.statistics(now=131.0)
    assert (stats.current_key_id, stats.previous_key_id, stats.next_key_id) == (4, None, None)
    assert stats.rotations == 2 and stats.opened == 3


# ---------------------------------------------------------------------------------------
# No gap in traffic through rotations: two paths of unequal delay, handshakes in band


def test_continuous_traffic_through_rotations_loses_nothing() -> None:
    rng = rng_of(42)
    local, remote = Identity(generate_private_key(rng)), Identity(generate_private_key(rng))
    remote_peer, local_peer = Peer(remote.public_key), Peer(local.public_key)
    a, b = KeyRing(is_initiator=True), KeyRing(is_initiator=False)
    delays = {0: 0.010, 1: 0.080}  # one-way, per path
    events: list[tuple[float, int, str, int, bytes]] = []  # (time, seq, kind, path, data)
    seq = 0

    def send(now: float, kind: str, path: int, data: bytes) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (now + delays[path], seq, kind, path, data))

    pending = None
    sent = {"a": 0, "b": 0}
    got = {"a": 0, "b": 0}
    handshakes = 0
    now = 0.0
    end = 2.5 * REKEY_AFTER_TIME + 10
    tick = 0.02  # 50 datagrams/s per path and direction
    while now < end or events:
        while events and events[0][0] <= now:
            t, _, kind, path, data = heapq.heappop(events)
            if kind == "init":
                init = consume_initiation(
                    data, identity=remote, peers={local.public_key: local_peer}, now=t
                )
                resp, r_keys = create_response(init, now=t, rng=rng)
                b.install(r_keys, now=t)
                send(t, "resp", path, resp)
            elif kind == "resp":
                assert pending is not None
                a.install(consume_response(data, pending, identity=local, now=t), now=t)
                pending = None
                handshakes += 1
            elif kind == "to_b":
                assert b.open_datagram(data, now=t) == b"a->b"
                got["b"] += 1
            else:
                assert a.open_datagram(data, now=t) == b"b->a"
                got["a"] += 1
        if now < end:
            if pending is None and a.needs_rekey(now=now):
                msg, pending = create_initiation(
                    identity=local,
                    peer=remote_peer,
                    session_id=77,
                    key_id=a.allocate_key_id(),
                    path_id=0,
                    wall_time=WALL + now,
                    now=now,
                    rng=rng,
                )
                send(now, "init", 0, msg)
            for path in (0, 1):
                if a.send_keys(now=now) is not None:
                    send(now, "to_b", path, a.seal_datagram(header(path), b"a->b", now=now))
                    sent["a"] += 1
                if b.send_keys(now=now) is not None:
                    send(now, "to_a", path, b.seal_datagram(header(path), b"b->a", now=now))
                    sent["b"] += 1
            a.handle_timer(now=now)
            b.handle_timer(now=now)
        now = round(now + tick, 6) if now < end else (events[0][0] if events else now)
    assert handshakes == 3  # at 0 s, ~120 s, ~240 s
    assert got["b"] == sent["a"] > 0
    assert got["a"] == sent["b"] > 0
    # The responder could not send only until the first datagram confirmed the first keys.
    assert sent["a"] - sent["b"] <= 4


def test_fuzz_open_datagram_only_crypto_errors_escape() -> None:
    a, b = rings()
    rnd = random.Random(99)
    bodies = [rnd.randbytes(60) for _ in range(50)]
    genuine = [
        a.seal_datagram(header(path_id=i % 3), body, now=1.0) for i, body in enumerate(bodies)
    ]
    accepted = 0
    for i in range(20_000):
        if i % 3 == 0:
            data = rnd.randbytes(rnd.randrange(0, 120))
        else:
            buf = bytearray(rnd.choice(genuine))
            for _ in range(rnd.randint(1, 3)):
                buf[rnd.randrange(len(buf))] ^= 1 << rnd.randrange(8)
            if i % 3 == 2:
                del buf[rnd.randrange(len(buf)) :]
            data = bytes(buf)
        if data in genuine:
            continue
        try:
            b.open_datagram(data, now=1.0)
            accepted += 1
        except CryptoError:
            pass
    assert accepted == 0
    # The genuine datagrams are all still accepted afterwards, once each.
    assert [b.open_datagram(d, now=1.0) for d in genuine] == bodies
