# Session keys: static key encoding, per-datagram AEAD, nonce counters and rotation.
#
# Invariants:
# - A (key, nonce) pair is never used twice to seal. The 64-bit nonce counter of a datagram
#   is `path_id << 32 | path_seq`: its path and the 32-bit path sequence number of its
#   clear header (the session numbers every datagram of a path and direction, from 0, and
#   keeps numbering a path it removes and adds again where it left off). `SessionKeys.claim`
#   refuses a path_seq not after the last one sealed on that path with that keypair
#   (`counter_reuse`), and more than 2^32 - 2^16 of them (`exhausted`), so even a session
#   that numbered a path again from 0 could not seal a nonce twice. Nonces are unique
#   across paths (different path id). The two directions use different keys.
# - `open` checks the replay window before any AEAD work and updates it only after the tag
#   verified, so forged datagrams cannot move the window.
# - The associated data of every datagram is its clear header (everything before the body),
#   so no header field the receiver acts on can be changed without detection.
# - Keys are unusable for sending and receiving `REJECT_AFTER_TIME` after their handshake;
#   a retired keypair ("previous") still opens datagrams for `PREVIOUS_KEY_GRACE` seconds so
#   datagrams in flight on slow paths during a rotation are not lost.
# - A responder's fresh keypair ("next") is never used to send before the initiator proved it
#   holds it (the first datagram that opens under it); then it becomes current.
# - Every deadline is compared as `now >= start + duration`, the expression `get_timer`
#   returns, so a driver woken at `get_timer()` always finds the deadline passed (no busy
#   loop from floating-point rounding).
# - No I/O, no clock, no randomness of its own: `now` and `rng` are passed in.

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from braid.core.replay import ReplayWindow

KEY_LEN = 32
TAG_LEN = 16

# Rotation schedule (WireGuard's constants, seconds and message counts).
REKEY_AFTER_TIME = 120.0
REJECT_AFTER_TIME = 180.0
REKEY_AFTER_MESSAGES = 2**60
PREVIOUS_KEY_GRACE = 30.0

# Per-path nonce counter space: the 32-bit path_seq (above it in the nonce, the path id).
COUNTER_BITS = 32
COUNTER_MASK = (1 << COUNTER_BITS) - 1
_HALF = 1 << (COUNTER_BITS - 1)
REJECT_AFTER_MESSAGES_PER_PATH = COUNTER_MASK - (1 << 16)
"""How far a path's numbering may advance under one keypair (it must never come round)."""
REKEY_AFTER_MESSAGES_PER_PATH = _HALF

REPLAY_WINDOW = 8192
"""Replay window per path and keypair, in datagrams (reordering within one path)."""

# Transport framing shared with the wire codec: the common header is COMMON_HEADER_LEN bytes
# with the path id at PATH_ID_OFFSET and the path_seq at PATH_SEQ_OFFSET; the 1-byte key
# field (the key id) follows.
COMMON_HEADER_LEN = 16
PATH_ID_OFFSET = 3
PATH_SEQ_OFFSET = 8
KEY_FIELD_LEN = 1
SEALED_HEADER_LEN = COMMON_HEADER_LEN + KEY_FIELD_LEN
OVERHEAD = KEY_FIELD_LEN + TAG_LEN
"""Bytes a sealed datagram carries beyond a clear one: key field and tag."""

_NONCE = struct.Struct("<4xQ")  # Noise/WireGuard: 32 zero bits, then the 64-bit counter LE
_KEY_FIELDS = tuple(bytes((key_id,)) for key_id in range(256))  # (no allocation per record)
_EMPTY = b""


class CryptoError(Exception):
    """A datagram failed to open; `reason` is a short drop-counter name."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# ---------------------------------------------------------------------------------------
# Static keys, in the text form of `wg genkey` / `wg pubkey`


def generate_private_key(rng: Callable[[int], bytes]) -> bytes:
    """Return a new X25519 private key (32 bytes, clamped exactly as `wg genkey` does)."""
    raw = bytearray(rng(KEY_LEN))
    if len(raw) != KEY_LEN:
        raise ValueError("rng returned the wrong number of bytes")
    raw[0] &= 248
    raw[31] = (raw[31] & 127) | 64
    return bytes(raw)


def public_key(private: bytes) -> bytes:
    """Return the X25519 public key (32 bytes) of a 32-byte private key."""
    if len(private) != KEY_LEN:
        raise ValueError("a private key is 32 bytes")
    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()


def encode_key(key: bytes) -> str:
    """Encode a 32-byte key as 44 characters of standard base64 (the `wg` text form)."""
    if len(key) != KEY_LEN:
        raise ValueError("a key is 32 bytes")
    return base64.b64encode(key).decode("ascii")


def decode_key(text: str) -> bytes:
    """Decode the `wg` text form of a key; ValueError with a one-line message otherwise."""
    stripped = text.strip()
    try:
        raw = base64.b64decode(stripped.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raw = b""
    if len(stripped) != 44 or len(raw) != KEY_LEN:
        raise ValueError(
            "a key is 44 characters of base64 (32 bytes), as printed by `braid genkey` "
            "or `braid pubkey`"
        )
    return raw


# ---------------------------------------------------------------------------------------
# One keypair


def nonce_counter(path_id: int, path_seq: int) -> int:
    """The 64-bit nonce counter of the datagram numbered `path_seq` on path `path_id`."""
    return (path_id << COUNTER_BITS) | path_seq


class SessionKeys:
    """The transport keys of one completed handshake (one direction each way).

    `seal`/`open` are the AEAD primitives with the clear header as associated data. In
    auth-only mode the payload travels in clear followed by a 16-byte Poly1305 tag over
    header and payload (ChaCha20-Poly1305 with an empty plaintext): integrity and replay
    protection without confidentiality.
    """

    __slots__ = (
        "_last",
        "_max_counter",
        "_recv",
        "_send",
        "_used",
        "_windows",
        "auth_only",
        "confirmed",
        "created_at",
        "is_initiator",
        "key_id",
        "messages_received",
        "messages_sent",
        "replay_window",
    )

    def __init__(
        self,
        send_key: bytes,
        receive_key: bytes,
        *,
        key_id: int,
        created_at: float,
        is_initiator: bool,
        auth_only: bool = False,
        replay_window: int = REPLAY_WINDOW,
    ) -> None:
        if len(send_key) != KEY_LEN or len(receive_key) != KEY_LEN:
            raise ValueError("transport keys are 32 bytes")
        if not 0 <= key_id <= 255:
            raise ValueError("key_id is one byte")
        self._send = ChaCha20Poly1305(send_key)
        self._recv = ChaCha20Poly1305(receive_key)
        self._last: list[int | None] = [None] * 256
        self._used = [0] * 256
        self._max_counter = 0
        self._windows: list[ReplayWindow | None] = [None] * 256
        self.key_id = key_id
        self.created_at = created_at
        self.is_initiator = is_initiator
        self.auth_only = auth_only
        self.replay_window = replay_window
        # The initiator knows the responder holds these keys (it answered); the responder
        # learns that the initiator does from the first datagram that opens.
        self.confirmed = is_initiator
        self.messages_sent = 0
        self.messages_received = 0

    def age(self, now: float) -> float:
        """Seconds since the handshake that made these keys."""
        return now - self.created_at

    def expired(self, now: float) -> bool:
        """True once the keys may no longer send or receive (REJECT_AFTER_TIME)."""
        return now >= self.created_at + REJECT_AFTER_TIME

    def max_path_counter(self) -> int:
        """How far the numbering of any path advanced under these keys (sealed ones)."""
        return self._max_counter

    def claim(self, path_id: int, path_seq: int) -> int:
        """The nonce counter to seal the datagram numbered `path_seq` on `path_id` with.

        Raises CryptoError("counter_reuse") unless `path_seq` comes after the last one
        sealed on that path with these keys (by less than 2^31, modulo 2^32), and
        CryptoError("exhausted") once the path's numbering advanced by
        REJECT_AFTER_MESSAGES_PER_PATH under them (it would come round to used nonces).
        """
        last = self._last[path_id]
        if last is not None:
            step = (path_seq - last) & COUNTER_MASK
            if not 0 < step < _HALF:
                raise CryptoError("counter_reuse")
            used = self._used[path_id] + step
            if used >= REJECT_AFTER_MESSAGES_PER_PATH:
                raise CryptoError("exhausted")
            self._used[path_id] = used
            if used > self._max_counter:
                self._max_counter = used
        self._last[path_id] = path_seq
        self.messages_sent += 1
        return (path_id << COUNTER_BITS) | path_seq

    def seal(self, header: bytes, payload: bytes, counter: int) -> bytes:
        """Return the datagram body for `payload`: ciphertext+tag, or payload+tag (auth-only).

        `header` is the associated data; `counter` must come from `claim`.
        """
        nonce = _NONCE.pack(counter)
        if self.auth_only:
            return payload + self._send.encrypt(nonce, _EMPTY, header + payload)
        return self._send.encrypt(nonce, payload, header)

    def open(self, header: bytes, body: bytes, path_id: int, path_seq: int) -> bytes:
        """Verify and return the payload of a body sealed on `path_id` as `path_seq`.

        Raises CryptoError("replay") for a number already seen or too old for the window
        (numbers are unwrapped against the highest opened on the path),
        CryptoError("auth") when the tag does not verify (wrong key, tampered header/body).
        """
        window = self._windows[path_id]
        if window is None:
            window = ReplayWindow(self.replay_window)
            self._windows[path_id] = window
        highest = window.highest
        seq = (
            path_seq
            if highest is None
            else highest + ((path_seq - highest + _HALF) & COUNTER_MASK) - _HALF
        )
        if not window.check(seq):  # cheap: before any AEAD work
            raise CryptoError("replay")
        nonce = _NONCE.pack((path_id << COUNTER_BITS) | path_seq)
        try:
            if self.auth_only:
                if len(body) < TAG_LEN:
                    raise CryptoError("truncated")
                payload = body[:-TAG_LEN]
                self._recv.decrypt(nonce, body[-TAG_LEN:], header + payload)
            else:
                payload = self._recv.decrypt(nonce, body, header)
        except InvalidTag:
            raise CryptoError("auth") from None
        window.update(seq)
        self.messages_received += 1
        self.confirmed = True
        return payload


# ---------------------------------------------------------------------------------------
# The keypairs of a session, and the rotation schedule


@dataclass(frozen=True, slots=True)
class KeyRingStatistics:
    """Immutable snapshot of a KeyRing."""

    current_key_id: int | None
    current_age: float | None
    previous_key_id: int | None
    next_key_id: int | None
    rotations: int
    sealed: int
    opened: int


class KeyRing:
    """Current, previous and next keypairs of one session, with WireGuard's schedule.

    - Initiator: `install(keys)` after `consume_response` makes them current at once (the
      responder proved it holds them); the old current becomes previous.
    - Responder: `install(keys)` after `create_response` puts them in *next*; they become
      current when the first datagram opens under them (the initiator sends one at once).
    - `seal_datagram` always uses current; `open_datagram` tries the keypair named by the
      datagram's key id among current, previous and next.
    """

    __slots__ = (
        "_last_key_id",
        "_opened",
        "_rotations",
        "_sealed",
        "current",
        "is_initiator",
        "next",
        "previous",
        "previous_grace",
        "previous_retired_at",
        "rekey_after_messages",
        "rekey_after_time",
    )

    def __init__(
        self,
        *,
        is_initiator: bool,
        previous_grace: float = PREVIOUS_KEY_GRACE,
        rekey_after_time: float = REKEY_AFTER_TIME,
        rekey_after_messages: int = REKEY_AFTER_MESSAGES,
        first_key_id: int = 0,
    ) -> None:
        self.is_initiator = is_initiator
        self.previous_grace = previous_grace
        self.rekey_after_time = rekey_after_time
        self.rekey_after_messages = rekey_after_messages
        self.current: SessionKeys | None = None
        self.previous: SessionKeys | None = None
        self.next: SessionKeys | None = None
        self.previous_retired_at = 0.0
        self._last_key_id = (first_key_id - 1) & 0xFF
        self._rotations = 0
        self._sealed = 0
        self._opened = 0

    # -- key ids and installation ----------------------------------------------------

    def allocate_key_id(self) -> int:
        """Initiator: a key id for the next handshake, distinct from every held keypair."""
        held = {k.key_id for k in (self.current, self.previous, self.next) if k is not None}
        candidate = self._last_key_id
        for _ in range(256):
            candidate = (candidate + 1) & 0xFF
            if candidate not in held:
                break
        self._last_key_id = candidate
        return candidate

    def install(self, keys: SessionKeys, *, now: float) -> None:
        """Add the keys of a completed handshake (see the class docstring for the roles)."""
        for slot in ("current", "previous", "next"):
            held = getattr(self, slot)
            if held is not None and held is not keys and held.key_id == keys.key_id:
                setattr(self, slot, None)
        if keys.is_initiator:
            self._rotate(keys, now)
        else:
            self.next = keys

    def _rotate(self, keys: SessionKeys, now: float) -> None:
        if self.current is not None:
            self.previous = self.current
            self.previous_retired_at = now
        self.current = keys
        self._rotations += 1

    # -- the data path -----------------------------------------------------------------

    def send_keys(self, *, now: float) -> SessionKeys | None:
        """The keypair to seal with now, or None (no handshake yet, or expired)."""
        cur = self.current
        if cur is None or now >= cur.created_at + REJECT_AFTER_TIME:
            return None
        return cur

    def receive_keys(self, key_id: int, *, now: float) -> SessionKeys | None:
        """The live keypair called `key_id`, or None."""
        for keys in (self.current, self.next, self.previous):
            if keys is not None and keys.key_id == key_id:
                if now >= keys.created_at + REJECT_AFTER_TIME:
                    return None
                if keys is self.previous and now >= self.previous_retired_at + self.previous_grace:
                    return None
                return keys
        return None

    def seal_datagram(self, header: bytes, body: bytes, *, now: float) -> bytes:
        """Return the sealed datagram: header, key field, sealed body.

        `header` is the 16-byte common header (path id at byte 3). Raises
        CryptoError("no_key") when there is no usable keypair.
        """
        keys = self.current
        if keys is None or now >= keys.created_at + REJECT_AFTER_TIME:
            raise CryptoError("no_key")
        counter = keys.claim(
            header[PATH_ID_OFFSET],
            int.from_bytes(header[PATH_SEQ_OFFSET : COMMON_HEADER_LEN - 4], "big"),
        )
        ad = header + _KEY_FIELDS[keys.key_id]
        self._sealed += 1
        return ad + keys.seal(ad, body, counter)

    def open_datagram(self, data: bytes, *, now: float) -> bytes:
        """Verify a sealed datagram and return its body; CryptoError(reason) otherwise.

        Reasons: "truncated", "unknown_key" (no live keypair with that id), "replay", "auth".
        A responder's next keypair becomes current on its first authentic datagram.
        """
        if len(data) < SEALED_HEADER_LEN + TAG_LEN:
            raise CryptoError("truncated")
        keys = self.receive_keys(data[COMMON_HEADER_LEN], now=now)
        if keys is None:
            raise CryptoError("unknown_key")
        body = keys.open(
            data[:SEALED_HEADER_LEN],
            data[SEALED_HEADER_LEN:],
            data[PATH_ID_OFFSET],
            int.from_bytes(data[PATH_SEQ_OFFSET : COMMON_HEADER_LEN - 4], "big"),
        )
        self._opened += 1
        if keys is self.next:
            self.next = None
            self._rotate(keys, now)
        return body

    # -- schedule ----------------------------------------------------------------------

    def needs_rekey(self, *, now: float) -> bool:
        """Initiator: True when a new handshake should start (no keys, old or worn keys)."""
        if not self.is_initiator:
            return False
        cur = self.current
        if cur is None:
            return True
        return (
            now >= cur.created_at + self.rekey_after_time
            or cur.messages_sent >= self.rekey_after_messages
            or cur.max_path_counter() >= REKEY_AFTER_MESSAGES_PER_PATH
        )

    def get_timer(self, *, include_rekey: bool = True) -> float | None:
        """The next instant at which `handle_timer` changes something, or None.

        With `include_rekey` (initiator), the instant the current keys become due for a
        rekey is included; a driver already re-handshaking passes False (no busy timer).
        """
        deadlines: list[float] = []
        for keys in (self.current, self.next):
            if keys is not None:
                deadlines.append(keys.created_at + REJECT_AFTER_TIME)
        if self.previous is not None:
            deadlines.append(
                min(
                    self.previous.created_at + REJECT_AFTER_TIME,
                    self.previous_retired_at + self.previous_grace,
                )
            )
        if include_rekey and self.is_initiator and self.current is not None:
            deadlines.append(self.current.created_at + self.rekey_after_time)
        return min(deadlines) if deadlines else None

    def handle_timer(self, *, now: float) -> None:
        """Forget keypairs past their lifetime (expired keys hold no secrets any longer)."""
        prev = self.previous
        if prev is not None and (
            now >= prev.created_at + REJECT_AFTER_TIME
            or now >= self.previous_retired_at + self.previous_grace
        ):
            self.previous = None
        if self.current is not None and self.current.expired(now):
            self.current = None
        if self.next is not None and self.next.expired(now):
            self.next = None

    def statistics(self, *, now: float) -> KeyRingStatistics:
        """Immutable snapshot (key ids, age of the current keys, counters)."""
        cur = self.current
        return KeyRingStatistics(
            current_key_id=cur.key_id if cur is not None else None,
            current_age=cur.age(now) if cur is not None else None,
            previous_key_id=self.previous.key_id if self.previous is not None else None,
            next_key_id=self.next.key_id if self.next is not None else None,
            rotations=self._rotations,
            sealed=self._sealed,
            opened=self._opened,
        )
