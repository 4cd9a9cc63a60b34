# Admission control for handshake initiations: MAC1, load detection, cookies, rate limits.
#
# Invariants:
# - Every decision costs at most two keyed BLAKE2s and a dict lookup; no Diffie-Hellman
#   happens here. Only an ACCEPT verdict may lead to the expensive `consume_initiation`.
# - Under load, an initiation is accepted only with a valid MAC2: a cookie bound to its
#   source address, which only someone receiving at that address can have. Otherwise the
#   responder may answer with a cookie reply: smaller than the initiation (no amplification),
#   sent only to a message with a valid MAC1, and rate limited per source.
# - The per-source table is bounded (least recently used entries are evicted) and the
#   global DH budget is a token bucket, so a flood from any number of (spoofed) sources
#   costs a bounded amount of memory and CPU.
# - No I/O, no clock, no randomness of its own: `now` and `rng` are passed in.

from __future__ import annotations

import enum
import hmac
import ipaddress
import struct
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from braid.core.handshake import (
    HEADER,
    HEADER_LEN,
    MAC_LEN,
    TYPE_COOKIE_REPLY,
    VERSION,
    cookie_key,
    mac,
    verify_mac1,
)

COOKIE_SECRET_LIFETIME = 120.0
"""The responder's cookie secret changes this often; a cookie is valid until it does."""
COOKIE_LIFETIME = 120.0 - 5.0
"""The initiator uses a received cookie for this long (a little less than the secret)."""
COOKIE_NONCE_LEN = 12
COOKIE_REPLY_LEN = HEADER_LEN + COOKIE_NONCE_LEN + MAC_LEN + 16

# Defaults (per second / tokens).
PER_SOURCE_RATE = 20.0
PER_SOURCE_BURST = 5.0
MAX_SOURCES = 4096
LOAD_RATE = 200.0
"""Initiations per second the responder spends Diffie-Hellman on before it is 'under load'."""
LOAD_BURST = 50.0
COOKIE_REPLY_RATE = 5.0
"""Cookie replies per second to one source (replies to spoofed sources are each smaller
than the message that caused them, so a global cap would only starve genuine initiators)."""
COOKIE_REPLY_BURST = 2.0
_NO_MAC2 = bytes(MAC_LEN)


def source_key(host: str) -> str:
    """The rate-limiting key of a source address: the IPv4 address or the IPv6 /64."""
    addr = ipaddress.ip_address(host)
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return str(addr)


def source_bytes(host: str, port: int) -> bytes:
    """The bytes a cookie is bound to: the packed address and the 16-bit port."""
    return ipaddress.ip_address(host).packed + struct.pack(">H", port)


class _Bucket:
    __slots__ = ("last", "tokens")

    def __init__(self, tokens: float, last: float) -> None:
        self.tokens = tokens
        self.last = last


class TokenBucket:
    """One token bucket: `rate` tokens per second, at most `burst` stored."""

    __slots__ = ("_b", "burst", "rate")

    def __init__(self, rate: float, burst: float, *, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._b = _Bucket(burst, now)

    def take(self, *, now: float) -> bool:
        """Spend one token if there is one."""
        return _take(self._b, self.rate, self.burst, now)

    def available(self, *, now: float) -> float:
        """Tokens available now (without spending)."""
        b = self._b
        return min(self.burst, b.tokens + max(0.0, now - b.last) * self.rate)


def _take(b: _Bucket, rate: float, burst: float, now: float) -> bool:
    elapsed = now - b.last
    if elapsed > 0:
        b.tokens = min(burst, b.tokens + elapsed * rate)
        b.last = now
    if b.tokens >= 1.0:
        b.tokens -= 1.0
        return True
    return False


@dataclass(frozen=True, slots=True)
class RateLimiterStatistics:
    """Immutable snapshot of a RateLimiter."""

    sources: int
    allowed: int
    limited: int
    evicted: int


class RateLimiter:
    """Token bucket per source key, in a table bounded to `max_sources` (LRU eviction)."""

    __slots__ = ("_allowed", "_evicted", "_limited", "_table", "burst", "max_sources", "rate")

    def __init__(
        self,
        *,
        rate: float = PER_SOURCE_RATE,
        burst: float = PER_SOURCE_BURST,
        max_sources: int = MAX_SOURCES,
    ) -> None:
        if rate <= 0 or burst < 1 or max_sources < 1:
            raise ValueError("rate > 0, burst >= 1 and max_sources >= 1 are required")
        self.rate = rate
        self.burst = burst
        self.max_sources = max_sources
        self._table: OrderedDict[Hashable, _Bucket] = OrderedDict()
        self._allowed = 0
        self._limited = 0
        self._evicted = 0

    def allow(self, source: Hashable, *, now: float) -> bool:
        """Spend one token of `source`'s bucket; False (and counted) if it is empty."""
        table = self._table
        bucket = table.get(source)
        if bucket is None:
            if len(table) >= self.max_sources:
                table.popitem(last=False)
                self._evicted += 1
            bucket = _Bucket(self.burst, now)
            table[source] = bucket
        else:
            table.move_to_end(source)
        if _take(bucket, self.rate, self.burst, now):
            self._allowed += 1
            return True
        self._limited += 1
        return False

    def statistics(self) -> RateLimiterStatistics:
        """Immutable snapshot of the table size and counters."""
        return RateLimiterStatistics(
            sources=len(self._table),
            allowed=self._allowed,
            limited=self._limited,
            evicted=self._evicted,
        )


# ---------------------------------------------------------------------------------------
# Cookies (WireGuard section 5.4.7, with ChaCha20-Poly1305 and a 96-bit random nonce)


class CookieChecker:
    """Responder side: makes cookies from a rotating secret and checks MAC2."""

    __slots__ = ("_encrypt", "_rng", "_secret", "_secret_at", "public_key")

    def __init__(self, public_key: bytes, *, rng: Callable[[int], bytes], now: float) -> None:
        self.public_key = public_key
        self._rng = rng
        self._encrypt = ChaCha20Poly1305(cookie_key(public_key))
        self._secret = rng(32)
        self._secret_at = now

    def _current_secret(self, now: float) -> bytes:
        if now - self._secret_at >= COOKIE_SECRET_LIFETIME:
            self._secret = self._rng(32)
            self._secret_at = now
        return self._secret

    def cookie_for(self, source: bytes, *, now: float) -> bytes:
        """The cookie of `source` under the current secret (16 bytes)."""
        return mac(self._current_secret(now), source)

    def check_mac2(self, message: bytes, source: bytes, *, now: float) -> bool:
        """True if the message's MAC2 was made with the current cookie of `source`."""
        if len(message) < HEADER_LEN + 2 * MAC_LEN or message[-MAC_LEN:] == _NO_MAC2:
            return False  # no cookie at all: no need to compute one
        cookie = self.cookie_for(source, now=now)
        expected = mac(cookie, message[:-MAC_LEN])
        return hmac.compare_digest(expected, message[-MAC_LEN:])

    def create_reply(self, message: bytes, source: bytes, *, now: float) -> bytes:
        """A cookie reply (COOKIE_REPLY_LEN bytes) to `message` from `source`.

        The cookie is encrypted under HASH("cookie--" || responder public key) with the
        reply's header and the message's MAC1 as associated data, so only the sender of
        that message can use the reply and no byte of it can be changed.
        """
        _, _, _, path_id, session_id = HEADER.unpack_from(message)
        mac1 = message[-2 * MAC_LEN : -MAC_LEN]
        nonce = self._rng(COOKIE_NONCE_LEN)
        header = HEADER.pack(VERSION, TYPE_COOKIE_REPLY, 0, path_id, session_id)
        sealed = self._encrypt.encrypt(nonce, self.cookie_for(source, now=now), header + mac1)
        return header + nonce + sealed


class CookieJar:
    """Initiator side: keeps the latest cookie received from the responder."""

    __slots__ = ("_cookie", "_decrypt", "_received_at")

    def __init__(self, responder_public_key: bytes) -> None:
        self._decrypt = ChaCha20Poly1305(cookie_key(responder_public_key))
        self._cookie: bytes | None = None
        self._received_at = 0.0

    def consume_reply(self, reply: bytes, *, mac1: bytes, now: float) -> bool:
        """Take the cookie from a reply to the message whose MAC1 was `mac1`.

        Returns False (and keeps nothing) for anything that is not such a reply.
        """
        if len(reply) != COOKIE_REPLY_LEN or reply[0] != VERSION:
            return False
        if reply[1] != TYPE_COOKIE_REPLY or reply[2] != 0:
            return False
        nonce = reply[HEADER_LEN : HEADER_LEN + COOKIE_NONCE_LEN]
        try:
            cookie = self._decrypt.decrypt(
                nonce, reply[HEADER_LEN + COOKIE_NONCE_LEN :], reply[:HEADER_LEN] + mac1
            )
        except InvalidTag:
            return False
        self._cookie = cookie
        self._received_at = now
        return True

    def cookie(self, *, now: float) -> bytes | None:
        """The cookie to put in MAC2 now, or None if none is fresh."""
        if self._cookie is None or now - self._received_at >= COOKIE_LIFETIME:
            return None
        return self._cookie


# ---------------------------------------------------------------------------------------
# The gate in front of consume_initiation


class Verdict(enum.Enum):
    """What to do with an incoming initiation."""

    ACCEPT = "accept"
    """Go on with consume_initiation (the expensive part)."""
    COOKIE = "cookie"
    """Under load and no valid MAC2: send `create_reply` to the source, then drop."""
    DROP_MAC1 = "bad_mac1"
    DROP_RATE = "rate_limited"
    DROP_LOAD = "under_load"


@dataclass(frozen=True, slots=True)
class GateStatistics:
    """Immutable snapshot of a HandshakeGate (counts by verdict)."""

    accepted: int
    cookies_sent: int
    bad_mac1: int
    rate_limited: int
    under_load: int
    sources: RateLimiterStatistics


class HandshakeGate:
    """Admission control for initiations, WireGuard style, sans-I/O.

    `check(message, key, source, now=...)` decides, in this order:
    1. MAC1 (keyed by our public key) must verify, else DROP_MAC1 (silence);
    2. if more initiations arrive than the DH budget `load_rate` allows, we are *under
       load*: then MAC2 must carry the source's current cookie, else COOKIE (if cookie
       replies are enabled and the source's reply budget allows) or DROP_LOAD;
    3. the source's token bucket must have a token, else DROP_RATE;
    4. ACCEPT.
    """

    __slots__ = (
        "_counts",
        "_load",
        "_replies",
        "checker",
        "cookie_replies",
        "limiter",
        "mac1_key",
    )

    def __init__(
        self,
        *,
        public_key: bytes,
        mac1_key: bytes,
        rng: Callable[[int], bytes],
        now: float,
        per_source_rate: float = PER_SOURCE_RATE,
        per_source_burst: float = PER_SOURCE_BURST,
        max_sources: int = MAX_SOURCES,
        load_rate: float = LOAD_RATE,
        load_burst: float = LOAD_BURST,
        cookie_replies: bool = True,
        cookie_reply_rate: float = COOKIE_REPLY_RATE,
    ) -> None:
        self.mac1_key = mac1_key
        self.checker = CookieChecker(public_key, rng=rng, now=now)
        self.limiter = RateLimiter(
            rate=per_source_rate, burst=per_source_burst, max_sources=max_sources
        )
        self._load = TokenBucket(load_rate, load_burst, now=now)
        self._replies = RateLimiter(
            rate=cookie_reply_rate, burst=COOKIE_REPLY_BURST, max_sources=max_sources
        )
        self.cookie_replies = cookie_replies
        self._counts: dict[Verdict, int] = dict.fromkeys(Verdict, 0)

    def under_load(self, *, now: float) -> bool:
        """True while the DH budget is spent."""
        return self._load.available(now=now) < 1.0

    def check(
        self,
        message: bytes,
        key: Hashable,
        source: bytes,
        *,
        now: float,
        mac1_verified: bool = False,
    ) -> Verdict:
        """The verdict for an initiation from `source` (see the class docstring).

        `key` keys the per-source buckets (see `source_key()`); `source` is what the cookie
        is bound to (see `source_bytes()`). `mac1_verified=True` skips step 1 when the
        caller already checked MAC1 (it must have: nothing else is cheaper).
        """
        verdict = self._decide(message, key, source, now, mac1_verified)
        self._counts[verdict] += 1
        return verdict

    def _decide(
        self, message: bytes, key: Hashable, source: bytes, now: float, mac1_verified: bool
    ) -> Verdict:
        if not mac1_verified and not verify_mac1(message, self.mac1_key):
            return Verdict.DROP_MAC1
        if not self._load.take(now=now) and not self.checker.check_mac2(message, source, now=now):
            if self.cookie_replies and self._replies.allow(key, now=now):
                return Verdict.COOKIE
            return Verdict.DROP_LOAD
        if not self.limiter.allow(key, now=now):
            return Verdict.DROP_RATE
        return Verdict.ACCEPT

    def create_reply(self, message: bytes, source: bytes, *, now: float) -> bytes:
        """The cookie reply for a COOKIE verdict."""
        return self.checker.create_reply(message, source, now=now)

    def statistics(self) -> GateStatistics:
        """Immutable snapshot of the verdict counters and the per-source table."""
        c = self._counts
        return GateStatistics(
            accepted=c[Verdict.ACCEPT],
            cookies_sent=c[Verdict.COOKIE],
            bad_mac1=c[Verdict.DROP_MAC1],
            rate_limited=c[Verdict.DROP_RATE],
            under_load=c[Verdict.DROP_LOAD],
            sources=self.limiter.statistics(),
        )
