"""X25519 key pairs as text, compatible with `wg genkey` / `wg pubkey`.

A private key is 32 random bytes clamped as X25519 requires (RFC 7748), printed as
standard base64 (44 characters); its public key is the X25519 base-point product,
printed the same way. Both round-trip with WireGuard's tools.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

KEY_BYTES = 32


def clamp(key: bytes) -> bytes:
    """Clamp 32 bytes into an X25519 private scalar (as `wg genkey` does)."""
    if len(key) != KEY_BYTES:
        raise ValueError(f"a key is {KEY_BYTES} bytes, got {len(key)}")
    k = bytearray(key)
    k[0] &= 248
    k[31] = (k[31] & 127) | 64
    return bytes(k)


def generate_private_key(rng: Callable[[int], bytes] = os.urandom) -> str:
    """A new private key as base64 text."""
    return base64.b64encode(clamp(rng(KEY_BYTES))).decode()


def decode_key(text: str) -> bytes:
    """Base64 key text -> 32 bytes; ValueError if it is not one."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not base64") from None
    if len(raw) != KEY_BYTES:
        raise ValueError(f"{len(raw)} bytes instead of {KEY_BYTES}")
    return raw


def public_key(private_text: str) -> str:
    """The public key (base64) of a private key (base64); ValueError if malformed."""
    private = X25519PrivateKey.from_private_bytes(decode_key(private_text))
    raw = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(raw).decode()
