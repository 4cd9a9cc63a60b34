"""Handshake admission: token buckets, bounded source table, cookies, the gate, a flood."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from braid.core import handshake as hs
from braid.core.cookie import (
    COOKIE_LIFETIME,
    COOKIE_REPLY_LEN,
    COOKIE_SECRET_LIFETIME,
    CookieChecker,
    CookieJar,
    HandshakeGate,
    RateLimiter,
    TokenBucket,
    Verdict,
    source_bytes,
    source_key,
)
from braid.core.handshake import INITIATION_LEN, Identity, Peer, create_initiation
from braid.core.keys import generate_private_key

WALL = 1_700_000_000.0
SRC = source_bytes("192.0.2.10", 40000)
SRC_KEY = source_key("192.0.2.10")


def rng_of(seed: int) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


class Portals:
    def __init__(self, seed: int = 1) -> None:
        self.rng = rng_of(seed)
        self.local = Identity(generate_private_key(self.rng))
        self.remote = Identity(generate_private_key(self.rng))
        self.remote_peer = Peer(self.remote.public_key)
        self.jar = CookieJar(self.remote.public_key)
        self.wall = WALL

    def initiation(self, *, now: float) -> tuple[bytes, hs.PendingHandshake]:
        self.wall += 1
        return create_initiation(
            identity=self.local,
            peer=self.remote_peer,
            session_id=9,
            key_id=0,
            path_id=1,
            wall_time=self.wall,
            now=now,
            rng=self.rng,
            cookie=self.jar.cookie(now=now),
        )

    def gate(self, now: float = 0.0, **kw: Any) -> HandshakeGate:
        return HandshakeGate(
            public_key=self.remote.public_key,
            mac1_key=self.remote.mac1_key,
            rng=self.rng,
            now=now,
            **kw,
        )


# ---------------------------------------------------------------------------------------
# Rate limiting


def test_token_bucket_exact_counts() -> None:
    bucket = TokenBucket(10.0, 3.0, now=0.0)
    assert [bucket.take(now=0.0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.take(now=0.05)  # half a token
    assert bucket.take(now=0.1)
    assert not bucket.take(now=0.1)
    assert not bucket.take(now=0.05)  # a clock going backwards refills nothing
    assert bucket.take(now=0.2)
    assert bucket.available(now=100.0) == 3.0  # capped at the burst


def test_rate_limiter_per_source() -> None:
    rl = RateLimiter(rate=16.0, burst=4.0)
    assert sum(rl.allow("a", now=0.0) for _ in range(10)) == 4
    assert sum(rl.allow("b", now=0.0) for _ in range(10)) == 4  # independent buckets
    # Sustained 64/s from "a" for 1 s gets exactly the rate, 16, through.
    allowed = sum(rl.allow("a", now=i / 64) for i in range(1, 65))
    assert allowed == 16
    stats = rl.statistics()
    assert (stats.sources, stats.allowed, stats.limited, stats.evicted) == (2, 24, 60, 0)


def test_rate_limiter_table_is_bounded_lru() -> None:
    rl = RateLimiter(rate=1.0, burst=1.0, max_sources=100)
    assert rl.allow("keep", now=0.0)
    for i in range(1000):
        rl.allow(f"spoof{i}", now=0.0)
        if i % 10 == 0:
            assert not rl.allow("keep", now=0.0)  # recently used: stays, stays empty
    stats = rl.statistics()
    assert stats.sources == 100
    assert stats.evicted == 1000 + 1 - 100


def test_bad_limiter_settings() -> None:
    with pytest.raises(ValueError):
        RateLimiter(rate=0.0)
    with pytest.raises(ValueError):
        RateLimiter(max_sources=0)


def test_source_keys() -> None:
    assert source_key("192.0.2.1") == "192.0.2.1"
    assert source_key("2001:db8:1:2:aaaa::1") == source_key("2001:db8:1:2:bbbb::2")
    assert source_key("2001:db8:1:2::1") != source_key("2001:db8:1:3::1")
    assert source_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert source_bytes("192.0.2.1", 1) == bytes([192, 0, 2, 1, 0, 1])
    assert len(source_bytes("2001:db8::1", 51820)) == 18
    with pytest.raises(ValueError):
        source_key("not an address")


# ---------------------------------------------------------------------------------------
# Cookies


def test_cookie_round_trip_and_mac2() -> None:
    p = Portals(seed=2)
    checker = CookieChecker(p.remote.public_key, rng=p.rng, now=0.0)
    msg, pending = p.initiation(now=0.0)
    assert not checker.check_mac2(msg, SRC, now=0.0)  # no cookie yet: MAC2 is zero
    reply = checker.create_reply(msg, SRC, now=0.0)
    assert len(reply) == COOKIE_REPLY_LEN == 52 < INITIATION_LEN  # no amplification
    assert reply[:8] == bytes([3, 7, 0, 1, 0, 0, 0, 9])
    assert p.jar.consume_reply(reply, mac1=pending.mac1, now=0.1)
    msg2, _ = p.initiation(now=0.2)
    assert checker.check_mac2(msg2, SRC, now=0.2)
    assert not checker.check_mac2(msg2, source_bytes("192.0.2.10", 40001), now=0.2)
    assert not checker.check_mac2(msg2, source_bytes("192.0.2.11", 40000), now=0.2)


def test_cookie_reply_is_bound_to_the_message_and_untamperable() -> None:
    p = Portals(seed=3)
    checker = CookieChecker(p.remote.public_key, rng=p.rng, now=0.0)
    msg, pending = p.initiation(now=0.0)
    reply = checker.create_reply(msg, SRC, now=0.0)
    _, other = p.initiation(now=0.0)
    assert not p.jar.consume_reply(reply, mac1=other.mac1, now=0.0)
    for bit in range(len(reply) * 8):
        bad = bytearray(reply)
        bad[bit // 8] ^= 1 << (bit % 8)
        assert not p.jar.consume_reply(bytes(bad), mac1=pending.mac1, now=0.0)
    for junk in (b"", reply[:-1], reply + b"\0", bytes(COOKIE_REPLY_LEN)):
        assert not p.jar.consume_reply(junk, mac1=pending.mac1, now=0.0)
    assert p.jar.cookie(now=0.0) is None
    # A reply made under another responder key is refused too.
    stranger = CookieChecker(Identity(generate_private_key(p.rng)).public_key, rng=p.rng, now=0)
    assert not p.jar.consume_reply(stranger.create_reply(msg, SRC, now=0), mac1=pending.mac1, now=0)
    assert p.jar.consume_reply(reply, mac1=pending.mac1, now=0.0)


def test_cookies_expire_with_the_secret() -> None:
    p = Portals(seed=4)
    checker = CookieChecker(p.remote.public_key, rng=p.rng, now=0.0)
    msg, pending = p.initiation(now=0.0)
    p.jar.consume_reply(checker.create_reply(msg, SRC, now=0.0), mac1=pending.mac1, now=0.0)
    assert p.jar.cookie(now=COOKIE_LIFETIME - 0.01) is not None
    assert p.jar.cookie(now=COOKIE_LIFETIME) is None
    msg2, _ = p.initiation(now=1.0)
    assert checker.check_mac2(msg2, SRC, now=COOKIE_SECRET_LIFETIME - 1)
    assert not checker.check_mac2(msg2, SRC, now=COOKIE_SECRET_LIFETIME)  # new secret


# ---------------------------------------------------------------------------------------
# The gate


def test_gate_drops_bad_mac1_silently() -> None:
    p = Portals(seed=5)
    gate = p.gate()
    rnd = random.Random(5)
    for _ in range(1000):
        junk = bytes([2, 5, 0, 0]) + rnd.randbytes(INITIATION_LEN - 4)
        assert gate.check(junk, SRC_KEY, SRC, now=0.0) is Verdict.DROP_MAC1
    assert gate.check(b"", SRC_KEY, SRC, now=0.0) is Verdict.DROP_MAC1
    assert not gate.under_load(now=0.0)  # garbage does not spend the DH budget
    msg, _ = p.initiation(now=0.0)
    assert gate.check(msg, SRC_KEY, SRC, now=0.0) is Verdict.ACCEPT
    stats = gate.statistics()
    assert (stats.bad_mac1, stats.accepted, stats.cookies_sent) == (1001, 1, 0)


def test_gate_rate_limits_a_source_when_not_under_load() -> None:
    p = Portals(seed=6)
    gate = p.gate(per_source_rate=2.0, per_source_burst=2.0, load_rate=1000.0, load_burst=1000.0)
    msg, _ = p.initiation(now=0.0)
    verdicts = [gate.check(msg, SRC_KEY, SRC, now=0.0) for _ in range(5)]
    assert verdicts == [Verdict.ACCEPT] * 2 + [Verdict.DROP_RATE] * 3
    other = source_key("198.51.100.7")
    assert gate.check(msg, other, source_bytes("198.51.100.7", 1), now=0.0) is Verdict.ACCEPT
    assert gate.check(msg, SRC_KEY, SRC, now=0.5) is Verdict.ACCEPT


def test_gate_under_load_asks_for_a_cookie_then_accepts() -> None:
    p = Portals(seed=7)
    gate = p.gate(load_rate=10.0, load_burst=10.0)
    attacker = source_bytes("203.0.113.5", 999)
    # Someone who knows our public key floods valid-MAC1 initiations: the budget runs out.
    flood, _ = p.initiation(now=0.0)
    verdicts = [gate.check(flood, "x", attacker, now=0.0) for _ in range(200)]
    assert verdicts[:5] == [Verdict.ACCEPT] * 5  # burst of the per-source bucket
    assert Verdict.COOKIE in verdicts[10:]
    assert gate.under_load(now=0.0)
    # The genuine initiator is asked for a cookie, and comes back with it.
    msg, pending = p.initiation(now=0.01)
    assert gate.check(msg, SRC_KEY, SRC, now=0.01) is Verdict.COOKIE
    reply = gate.create_reply(msg, SRC, now=0.01)
    assert p.jar.consume_reply(reply, mac1=pending.mac1, now=0.02)
    msg2, _ = p.initiation(now=0.03)
    assert gate.check(msg2, SRC_KEY, SRC, now=0.03) is Verdict.ACCEPT
    # A spoofer replaying that message from another address gets no cookie-free pass.
    assert gate.check(msg2, "y", attacker, now=0.03) is not Verdict.ACCEPT


def test_gate_without_cookie_replies_stays_silent_under_load() -> None:
    p = Portals(seed=8)
    gate = p.gate(load_rate=1.0, load_burst=1.0, cookie_replies=False)
    msg, _ = p.initiation(now=0.0)
    assert gate.check(msg, SRC_KEY, SRC, now=0.0) is Verdict.ACCEPT
    assert gate.check(msg, SRC_KEY, SRC, now=0.0) is Verdict.DROP_LOAD


def test_cookie_replies_are_rate_limited_per_source() -> None:
    p = Portals(seed=9)
    gate = p.gate(load_rate=1.0, load_burst=1.0, cookie_reply_rate=4.0)
    msg, _ = p.initiation(now=0.0)
    assert gate.check(msg, SRC_KEY, SRC, now=0.0) is Verdict.ACCEPT  # the DH budget
    verdicts = [gate.check(msg, SRC_KEY, SRC, now=0.0) for _ in range(100)]
    assert verdicts.count(Verdict.COOKIE) == 2  # the reply burst
    assert verdicts.count(Verdict.DROP_LOAD) == 98
    assert gate.check(msg, SRC_KEY, SRC, now=0.25) is Verdict.COOKIE  # 4 per second
    assert gate.check(msg, "other", SRC, now=0.25) is Verdict.COOKIE


def test_flood_of_bogus_initiations_from_many_sources() -> None:
    """50 000 bogus initiations per second for 2 s, from spoofed sources, plus one genuine
    initiator every 0.5 s: every genuine one is accepted, no bogus one is, and the gate's
    memory stays bounded."""
    p = Portals(seed=10)
    gate = p.gate(max_sources=1024)
    rnd = random.Random(10)
    genuine_accepted = 0
    bogus_accepted = 0
    for i in range(100_000):
        now = i / 50_000
        src_host = f"10.{rnd.randrange(256)}.{rnd.randrange(256)}.{rnd.randrange(256)}"
        junk = bytes([2, 5, 0, 1]) + rnd.randbytes(INITIATION_LEN - 4)
        if gate.check(junk, src_host, source_bytes(src_host, 5), now=now) is Verdict.ACCEPT:
            bogus_accepted += 1
        if i % 25_000 == 0:
            msg, _ = p.initiation(now=now)
            if gate.check(msg, SRC_KEY, SRC, now=now) is Verdict.ACCEPT:
                genuine_accepted += 1
    assert bogus_accepted == 0
    assert genuine_accepted == 4
    assert gate.statistics().sources.sources <= 1024


def test_flood_of_valid_mac1_initiations_is_held_to_the_dh_budget() -> None:
    """Someone who knows the responder's public key replays one valid-MAC1 initiation at
    50 000/s from spoofed sources for 1 s: at most the DH budget (burst + rate x time) goes
    on to the expensive step, and the genuine initiator still gets in via a cookie."""
    p = Portals(seed=11)
    gate = p.gate(load_rate=200.0, load_burst=50.0, max_sources=1024)
    rnd = random.Random(11)
    flood, _ = p.initiation(now=0.0)
    passed = 0
    for i in range(50_000):
        host = f"10.{rnd.randrange(256)}.{rnd.randrange(256)}.{rnd.randrange(256)}"
        if gate.check(flood, host, source_bytes(host, 7), now=i / 50_000) is Verdict.ACCEPT:
            passed += 1
    assert passed <= 50 + 200 + 1
    msg, pending = p.initiation(now=1.0)
    assert gate.check(msg, SRC_KEY, SRC, now=1.0) is Verdict.COOKIE
    assert p.jar.consume_reply(gate.create_reply(msg, SRC, now=1.0), mac1=pending.mac1, now=1.0)
    msg2, _ = p.initiation(now=1.001)
    assert gate.check(msg2, SRC_KEY, SRC, now=1.001) is Verdict.ACCEPT
    assert gate.statistics().sources.sources <= 1024
