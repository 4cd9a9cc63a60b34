# Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s handshake, as WireGuard uses it (sans-I/O).
#
#   <- s
#   ...
#   -> e, es, s, ss, {clear header, timestamp, key id, options}
#   <- e, ee, se, psk, {clear header}
#
# Invariants:
# - `NoiseIKpsk2` is the plain Noise pattern (HASH = BLAKE2s, HMAC/HKDF over it, X25519,
#   ChaCha20-Poly1305 with nonce 0^32 || LE64(n)); it is checked against the cacophony test
#   vectors. The braid layer only adds framing: the prologue is IDENTIFIER (WireGuard's
#   "identifier" is exactly the Noise prologue) and MAC1/MAC2 trail each message.
# - The responder rejects any message whose length, version, type or MAC1 is wrong with one
#   keyed BLAKE2s and no Diffie-Hellman; MAC1 is keyed by the receiver's public key.
# - An initiation is accepted only from a configured peer and only if its timestamp is
#   strictly greater than the last one accepted from that peer: a replayed or older
#   initiation is refused. The timestamp is encrypted and authenticated by the static keys.
# - Each message's encrypted payload starts with a copy of its clear 8-byte header, which
#   must match: every byte of a handshake message except MAC2 is authenticated.
# - Every failure raises HandshakeError(reason); nothing else escapes for any input bytes.
# - No I/O, no clock, no randomness of its own: `now`, `wall_time` and `rng` are passed in.

from __future__ import annotations

import hashlib
import hmac
import math
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from braid.core.keys import KEY_LEN, TAG_LEN, SessionKeys

CONSTRUCTION = b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"
IDENTIFIER = b"braid v2 multipath bonding tunnel"
"""The Noise prologue (WireGuard's "identifier"): binds handshakes to this protocol."""
LABEL_MAC1 = b"mac1----"
LABEL_COOKIE = b"cookie--"

VERSION = 3
TYPE_INITIATION = 5
TYPE_RESPONSE = 6
TYPE_COOKIE_REPLY = 7

HEADER = struct.Struct(">BBBBI")  # version, type, flags, path_id, session_id
HEADER_LEN = HEADER.size  # 8
MAC_LEN = 16
TIMESTAMP_LEN = 12
INIT_PAYLOAD = struct.Struct(">8s12sBB2x")  # header copy, timestamp, key_id, options, pad
INIT_PAYLOAD_LEN = INIT_PAYLOAD.size  # 24
RESP_PAYLOAD_LEN = HEADER_LEN  # the response's payload is a copy of its header
OPTION_AUTH_ONLY = 0x01

INITIATION_LEN = (
    HEADER_LEN + KEY_LEN + (KEY_LEN + TAG_LEN) + (INIT_PAYLOAD_LEN + TAG_LEN) + 2 * MAC_LEN
)
RESPONSE_LEN = HEADER_LEN + KEY_LEN + (RESP_PAYLOAD_LEN + TAG_LEN) + 2 * MAC_LEN
ZERO_PSK = bytes(KEY_LEN)
MIN_INITIATION_INTERVAL = 1 / 50
"""A peer's initiations are accepted at most this often (WireGuard: 50 per second)."""

_TAI64_BASE = 0x400000000000000A  # TAI64 label of the Unix epoch, as WireGuard (2^62 + 10)
_WHITENER = 0xFFFFFF  # drop the low 24 bits of the nanoseconds (WireGuard does the same)
_TAI64N = struct.Struct(">QI")
_NONCE = struct.Struct("<4xQ")
_NO_MAC2 = bytes(MAC_LEN)


class HandshakeError(Exception):
    """A handshake message was refused; `reason` is a short drop-counter name.

    Reasons: "bad_length", "bad_version", "bad_type", "bad_flags", "bad_mac1", "bad_mac2",
    "bad_key",
    "decrypt", "unknown_peer", "header_mismatch", "session_mismatch", "replayed_timestamp",
    "flood", "mode_refused".
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# ---------------------------------------------------------------------------------------
# Primitives


def hash_(*parts: bytes) -> bytes:
    """HASH: BLAKE2s-256 of the concatenation of `parts`."""
    h = hashlib.blake2s()
    for part in parts:
        h.update(part)
    return h.digest()


def hmac_(key: bytes, data: bytes) -> bytes:
    """HMAC-BLAKE2s-256 (RFC 2104 over BLAKE2s, block 64), as Noise and WireGuard use."""
    return hmac.new(key, data, hashlib.blake2s).digest()


def hkdf(chaining_key: bytes, ikm: bytes, n: int) -> list[bytes]:
    """Noise HKDF: `n` (1-3) 32-byte outputs from chaining key and input key material."""
    temp = hmac_(chaining_key, ikm)
    out: list[bytes] = []
    prev = b""
    for i in range(1, n + 1):
        prev = hmac_(temp, prev + bytes((i,)))
        out.append(prev)
    return out


def mac(key: bytes, data: bytes) -> bytes:
    """MAC: keyed BLAKE2s with a 16-byte output (WireGuard's MAC1/MAC2 and cookie)."""
    return hashlib.blake2s(data, key=key, digest_size=MAC_LEN).digest()


def mac1_key(public: bytes) -> bytes:
    """The MAC1 key of the peer whose public key is `public`: HASH(LABEL_MAC1 || public)."""
    return hash_(LABEL_MAC1, public)


def cookie_key(public: bytes) -> bytes:
    """The key of cookie replies from `public`: HASH(LABEL_COOKIE || public)."""
    return hash_(LABEL_COOKIE, public)


def tai64n(wall_time: float) -> bytes:
    """12-byte TAI64N timestamp of a Unix time (low 24 bits of nanoseconds cleared)."""
    seconds = math.floor(wall_time)
    nanos = min(int((wall_time - seconds) * 1e9), 999_999_999) & ~_WHITENER
    return _TAI64N.pack(_TAI64_BASE + seconds, nanos)


def _dh(private: X25519PrivateKey, public: bytes) -> bytes:
    try:
        return private.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError:  # low-order point: all-zero shared secret
        raise HandshakeError("bad_key") from None


def _private(raw: bytes) -> X25519PrivateKey:
    if len(raw) != KEY_LEN:
        raise ValueError("a private key is 32 bytes")
    return X25519PrivateKey.from_private_bytes(raw)


def _public_of(private: X25519PrivateKey) -> bytes:
    return private.public_key().public_bytes_raw()


# ---------------------------------------------------------------------------------------
# The Noise pattern


class NoiseIKpsk2:
    """One side of a Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s handshake (the plain pattern).

    The initiator calls `write_initiation` then `read_response`; the responder calls
    `read_initiation` then `write_response`; both then `split()`. Payload bytes are free.
    Failures raise HandshakeError("decrypt") or HandshakeError("bad_key").
    """

    __slots__ = ("_ck", "_e", "_h", "_k", "_n", "_s", "_s_pub", "initiator", "re", "rs")

    def __init__(
        self,
        *,
        initiator: bool,
        prologue: bytes,
        static_private: bytes,
        remote_static: bytes | None = None,
    ) -> None:
        self.initiator = initiator
        self._s = _private(static_private)
        self._s_pub = _public_of(self._s)
        self._e: X25519PrivateKey | None = None
        self.rs = remote_static
        self.re: bytes | None = None
        h = hash_(CONSTRUCTION) if len(CONSTRUCTION) > 32 else CONSTRUCTION.ljust(32, b"\0")
        self._ck = h
        self._h = hash_(h, prologue)
        self._k: bytes | None = None
        self._n = 0
        # pre-message: <- s
        if initiator:
            if remote_static is None or len(remote_static) != KEY_LEN:
                raise ValueError("the initiator needs the responder's 32-byte public key")
            self._mix_hash(remote_static)
        else:
            self._mix_hash(self._s_pub)

    # -- symmetric state ----------------------------------------------------------------

    def copy(self) -> NoiseIKpsk2:
        """An independent copy of this state (to try a message without committing)."""
        other = NoiseIKpsk2.__new__(NoiseIKpsk2)
        for slot in NoiseIKpsk2.__slots__:
            setattr(other, slot, getattr(self, slot))
        return other

    @property
    def handshake_hash(self) -> bytes:
        """The transcript hash h (equal on both sides after a successful handshake)."""
        return self._h

    def _mix_hash(self, data: bytes) -> None:
        self._h = hash_(self._h, data)

    def _mix_key(self, ikm: bytes) -> None:
        self._ck, self._k = hkdf(self._ck, ikm, 2)
        self._n = 0

    def _mix_key_and_hash(self, ikm: bytes) -> None:
        self._ck, temp_h, self._k = hkdf(self._ck, ikm, 3)
        self._mix_hash(temp_h)
        self._n = 0

    def _encrypt_and_hash(self, plaintext: bytes) -> bytes:
        assert self._k is not None
        ct = ChaCha20Poly1305(self._k).encrypt(_NONCE.pack(self._n), plaintext, self._h)
        self._n += 1
        self._mix_hash(ct)
        return ct

    def _decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        assert self._k is not None
        try:
            pt = ChaCha20Poly1305(self._k).decrypt(_NONCE.pack(self._n), ciphertext, self._h)
        except InvalidTag:
            raise HandshakeError("decrypt") from None
        self._n += 1
        self._mix_hash(ciphertext)
        return pt

    def _token_e(self, e_pub: bytes) -> None:
        self._mix_hash(e_pub)
        self._mix_key(e_pub)  # psk modifier: e also feeds the chaining key

    # -- messages -----------------------------------------------------------------------

    def write_initiation(self, ephemeral_private: bytes, payload: bytes) -> bytes:
        """-> e, es, s, ss, {payload}. Returns e (32) || {s} (48) || {payload}."""
        assert self.initiator and self.rs is not None
        self._e = _private(ephemeral_private)
        e_pub = _public_of(self._e)
        self._token_e(e_pub)
        self._mix_key(_dh(self._e, self.rs))
        enc_s = self._encrypt_and_hash(self._s_pub)
        self._mix_key(_dh(self._s, self.rs))
        return e_pub + enc_s + self._encrypt_and_hash(payload)

    def read_initiation(
        self, message: bytes, *, accept_static: Callable[[bytes], None] | None = None
    ) -> bytes:
        """Process an initiation; return its payload. Sets `rs` and `re`.

        `accept_static(rs)` runs after the initiator's static key is decrypted and before
        the static-static DH; it may raise HandshakeError (e.g. an unknown peer).
        """
        assert not self.initiator
        if len(message) < 2 * KEY_LEN + 2 * TAG_LEN:
            raise HandshakeError("bad_length")
        self.re = message[:KEY_LEN]
        self._token_e(self.re)
        self._mix_key(_dh(self._s, self.re))
        rs = self._decrypt_and_hash(message[KEY_LEN : 2 * KEY_LEN + TAG_LEN])
        if accept_static is not None:
            accept_static(rs)
        self.rs = rs
        self._mix_key(_dh(self._s, rs))
        return self._decrypt_and_hash(message[2 * KEY_LEN + TAG_LEN :])

    def write_response(self, ephemeral_private: bytes, payload: bytes, psk: bytes) -> bytes:
        """<- e, ee, se, psk, {payload}. Returns e (32) || {payload}."""
        assert not self.initiator and self.re is not None and self.rs is not None
        self._e = _private(ephemeral_private)
        e_pub = _public_of(self._e)
        self._token_e(e_pub)
        self._mix_key(_dh(self._e, self.re))
        self._mix_key(_dh(self._e, self.rs))
        self._mix_key_and_hash(psk)
        return e_pub + self._encrypt_and_hash(payload)

    def read_response(self, message: bytes, psk: bytes) -> bytes:
        """Process a response; return its payload. Sets `re`."""
        assert self.initiator and self._e is not None
        if len(message) < KEY_LEN + TAG_LEN:
            raise HandshakeError("bad_length")
        self.re = message[:KEY_LEN]
        self._token_e(self.re)
        self._mix_key(_dh(self._e, self.re))
        self._mix_key(_dh(self._s, self.re))
        self._mix_key_and_hash(psk)
        return self._decrypt_and_hash(message[KEY_LEN:])

    def split(self) -> tuple[bytes, bytes]:
        """Transport keys (send, receive) for this side."""
        k1, k2 = hkdf(self._ck, b"", 2)
        return (k1, k2) if self.initiator else (k2, k1)


# ---------------------------------------------------------------------------------------
# braid's handshake messages


class Identity:
    """This portal's static key pair, with the derived MAC1 and cookie keys."""

    __slots__ = ("cookie_key", "mac1_key", "private_key", "public_key")

    def __init__(self, private_key: bytes) -> None:
        self.private_key = private_key
        self.public_key = _public_of(_private(private_key))
        self.mac1_key = mac1_key(self.public_key)
        self.cookie_key = cookie_key(self.public_key)


@dataclass(slots=True)
class Peer:
    """A remote portal we may handshake with (its public key and optional PSK).

    `last_timestamp` and `last_initiation_at` are responder state: the greatest initiation
    timestamp accepted from this peer (an initiation must carry a greater one) and when
    (monotonic) it was accepted (at most one per MIN_INITIATION_INTERVAL).
    """

    public_key: bytes
    preshared_key: bytes = ZERO_PSK
    allow_auth_only: bool = True
    last_timestamp: bytes = bytes(TIMESTAMP_LEN)
    last_initiation_at: float = -math.inf
    _mac1: bytes = field(init=False, repr=False, compare=False, default=b"")
    _cookie: bytes = field(init=False, repr=False, compare=False, default=b"")

    def __post_init__(self) -> None:
        if len(self.public_key) != KEY_LEN or len(self.preshared_key) != KEY_LEN:
            raise ValueError("public and pre-shared keys are 32 bytes")
        self._mac1 = mac1_key(self.public_key)
        self._cookie = cookie_key(self.public_key)

    @property
    def mac1_key(self) -> bytes:
        """Key of the MAC1 on messages sent to this peer."""
        return self._mac1

    @property
    def cookie_key(self) -> bytes:
        """Key that decrypts cookie replies from this peer."""
        return self._cookie


@dataclass(slots=True)
class PendingHandshake:
    """Initiator state between `create_initiation` and `consume_response`."""

    noise: NoiseIKpsk2
    peer: Peer
    session_id: int
    key_id: int
    auth_only: bool
    created_at: float
    mac1: bytes
    """The MAC1 of the initiation: the associated data of a cookie reply to it."""


@dataclass(slots=True)
class Initiation:
    """A verified initiation (responder side), input to `create_response`."""

    noise: NoiseIKpsk2
    peer: Peer
    session_id: int
    key_id: int
    auth_only: bool
    path_id: int
    timestamp: bytes


def _finish(message: bytearray, mac1k: bytes, cookie: bytes | None) -> bytes:
    """Write MAC1 and MAC2 into the last 32 bytes of `message`."""
    end = len(message)
    mac1 = mac(mac1k, bytes(message[: end - 2 * MAC_LEN]))
    message[end - 2 * MAC_LEN : end - MAC_LEN] = mac1
    if cookie is not None:
        message[end - MAC_LEN :] = mac(cookie, bytes(message[: end - MAC_LEN]))
    return bytes(message)


def verify_mac1(message: bytes, key: bytes) -> bool:
    """True if the MAC1 of a handshake message verifies under `key` (one keyed BLAKE2s)."""
    if len(message) < HEADER_LEN + 2 * MAC_LEN:
        return False
    end = len(message) - MAC_LEN
    return hmac.compare_digest(mac(key, message[: end - MAC_LEN]), message[end - MAC_LEN : end])


def _check_header(message: bytes, msg_type: int, length: int) -> tuple[int, int]:
    if len(message) != length:
        raise HandshakeError("bad_length")
    version, mtype, flags, path_id, session_id = HEADER.unpack_from(message)
    if version != VERSION:
        raise HandshakeError("bad_version")
    if mtype != msg_type:
        raise HandshakeError("bad_type")
    if flags != 0:
        raise HandshakeError("bad_flags")
    return path_id, session_id


def create_initiation(
    *,
    identity: Identity,
    peer: Peer,
    session_id: int,
    key_id: int,
    path_id: int,
    wall_time: float,
    now: float,
    rng: Callable[[int], bytes],
    auth_only: bool = False,
    cookie: bytes | None = None,
) -> tuple[bytes, PendingHandshake]:
    """Build a handshake initiation (INITIATION_LEN bytes) and the state to keep for it.

    `wall_time` is Unix time (for the replay-proof timestamp); `now` is monotonic.
    `cookie` is a fresh cookie from a cookie reply (sets MAC2), or None.
    """
    noise = NoiseIKpsk2(
        initiator=True,
        prologue=IDENTIFIER,
        static_private=identity.private_key,
        remote_static=peer.public_key,
    )
    header = HEADER.pack(VERSION, TYPE_INITIATION, 0, path_id, session_id)
    payload = INIT_PAYLOAD.pack(
        header, tai64n(wall_time), key_id, OPTION_AUTH_ONLY if auth_only else 0
    )
    msg = bytearray(header)
    msg += noise.write_initiation(rng(KEY_LEN), payload)
    msg += bytes(2 * MAC_LEN)
    out = _finish(msg, peer.mac1_key, cookie)
    pending = PendingHandshake(
        noise=noise,
        peer=peer,
        session_id=session_id,
        key_id=key_id,
        auth_only=auth_only,
        created_at=now,
        mac1=out[-2 * MAC_LEN : -MAC_LEN],
    )
    return out, pending


def consume_initiation(
    message: bytes,
    *,
    identity: Identity,
    peers: Mapping[bytes, Peer],
    now: float,
) -> Initiation:
    """Verify an initiation from one of `peers` (keyed by public key).

    Order of checks: length, header, MAC1 (no DH before it), then the Noise message
    (DH), the peer's identity, the payload (whose copy of the header must equal the clear
    one) and the timestamp. On success the peer's `last_timestamp` advances, so the same
    initiation is refused if it comes again.
    """
    path_id, session_id = _check_header(message, TYPE_INITIATION, INITIATION_LEN)
    if not verify_mac1(message, identity.mac1_key):
        raise HandshakeError("bad_mac1")
    found: list[Peer] = []

    def accept_static(rs: bytes) -> None:
        peer = peers.get(rs)
        if peer is None:
            raise HandshakeError("unknown_peer")
        found.append(peer)

    noise = NoiseIKpsk2(initiator=False, prologue=IDENTIFIER, static_private=identity.private_key)
    payload = noise.read_initiation(
        message[HEADER_LEN : INITIATION_LEN - 2 * MAC_LEN], accept_static=accept_static
    )
    peer = found[0]
    header, timestamp, key_id, options = INIT_PAYLOAD.unpack(payload)
    if header != message[:HEADER_LEN]:
        raise HandshakeError("header_mismatch")
    if options & ~OPTION_AUTH_ONLY:
        raise HandshakeError("bad_flags")
    auth_only = bool(options & OPTION_AUTH_ONLY)
    if auth_only and not peer.allow_auth_only:
        raise HandshakeError("mode_refused")
    if timestamp <= peer.last_timestamp:
        raise HandshakeError("replayed_timestamp")
    if now - peer.last_initiation_at < MIN_INITIATION_INTERVAL:
        raise HandshakeError("flood")
    peer.last_timestamp = timestamp
    peer.last_initiation_at = now
    return Initiation(
        noise=noise,
        peer=peer,
        session_id=session_id,
        key_id=key_id,
        auth_only=auth_only,
        path_id=path_id,
        timestamp=timestamp,
    )


def create_response(
    initiation: Initiation,
    *,
    now: float,
    rng: Callable[[int], bytes],
    path_id: int | None = None,
) -> tuple[bytes, SessionKeys]:
    """Build the response (RESPONSE_LEN bytes) and the responder's transport keys.

    `path_id` defaults to the initiation's. The keys are unconfirmed: install them as
    *next* (KeyRing.install does) and send with them only after a datagram from the
    initiator opened under them.
    """
    noise = initiation.noise
    pid = initiation.path_id if path_id is None else path_id
    header = HEADER.pack(VERSION, TYPE_RESPONSE, 0, pid, initiation.session_id)
    msg = bytearray(header)
    msg += noise.write_response(rng(KEY_LEN), header, initiation.peer.preshared_key)
    msg += bytes(2 * MAC_LEN)
    out = _finish(msg, initiation.peer.mac1_key, None)
    send, recv = noise.split()
    keys = SessionKeys(
        send,
        recv,
        key_id=initiation.key_id,
        created_at=now,
        is_initiator=False,
        auth_only=initiation.auth_only,
    )
    return out, keys


def consume_response(
    message: bytes, pending: PendingHandshake, *, identity: Identity, now: float
) -> SessionKeys:
    """Verify the response to `pending` and return the initiator's transport keys.

    A wrong PSK, a response to another initiation or any tampering fails with
    HandshakeError("decrypt"); `pending` is left intact by a failure (a forged response
    cannot spoil it) and must not be reused after success.
    """
    _, session_id = _check_header(message, TYPE_RESPONSE, RESPONSE_LEN)
    if not verify_mac1(message, identity.mac1_key):
        raise HandshakeError("bad_mac1")
    if session_id != pending.session_id:
        raise HandshakeError("session_mismatch")
    if message[-MAC_LEN:] != _NO_MAC2:  # braid's initiator never hands out cookies
        raise HandshakeError("bad_mac2")
    noise = pending.noise.copy()
    payload = noise.read_response(
        message[HEADER_LEN : RESPONSE_LEN - 2 * MAC_LEN], pending.peer.preshared_key
    )
    if payload != message[:HEADER_LEN]:
        raise HandshakeError("header_mismatch")
    send, recv = noise.split()
    return SessionKeys(
        send,
        recv,
        key_id=pending.key_id,
        created_at=now,
        is_initiator=True,
        auth_only=pending.auth_only,
    )


def peek_type(message: bytes) -> int | None:
    """The message type of a v3 datagram (handshake or transport), or None if too short."""
    if len(message) < HEADER_LEN or message[0] != VERSION:
        return None
    return message[1]


# ---------------------------------------------------------------------------------------
# When the initiator (re)tries


REKEY_TIMEOUT = 1.0
"""First retry of an unanswered initiation after this long (doubling, see RETRY_MAX)."""
RETRY_MAX = 8.0
RETRY_JITTER = 0.25
"""Up to this fraction of each delay is added at random (so portals do not synchronise)."""


class HandshakeRetry:
    """Initiator schedule: when to send the next initiation while none is answered.

    `start(now)` when keys are needed (none yet, or `KeyRing.needs_rekey`); send an
    initiation whenever `due(now)` and then call `sent(now)`; `succeeded()` after
    `consume_response` worked. Unanswered initiations are retried after REKEY_TIMEOUT,
    doubling up to RETRY_MAX, with jitter, for as long as keys are wanted (a portal keeps
    trying until its peer comes back). `attempts` tells the driver how many were sent, so it
    can rotate the initiation over the live paths.
    """

    __slots__ = ("_deadline", "_delay", "_rng", "active", "attempts")

    def __init__(self, rng: Callable[[int], bytes]) -> None:
        self._rng = rng
        self._deadline: float | None = None
        self._delay = REKEY_TIMEOUT
        self.active = False
        self.attempts = 0

    def start(self, now: float) -> None:
        """Keys are wanted: an initiation is due at once (no-op if already trying)."""
        if not self.active:
            self.active = True
            self.attempts = 0
            self._delay = REKEY_TIMEOUT
            self._deadline = now

    def due(self, now: float) -> bool:
        """True if an initiation should be sent now."""
        return self.active and self._deadline is not None and now >= self._deadline

    def sent(self, now: float) -> None:
        """An initiation went out: arm the retry."""
        self.attempts += 1
        jitter = int.from_bytes(self._rng(2), "big") / 65536 * RETRY_JITTER
        self._deadline = now + self._delay * (1.0 + jitter)
        self._delay = min(self._delay * 2.0, RETRY_MAX)

    def succeeded(self) -> None:
        """The handshake completed: stop retrying."""
        self.active = False
        self._deadline = None

    def deadline(self) -> float | None:
        """When `due` next becomes true, or None when not trying."""
        return self._deadline if self.active else None
