"""Key material for the runtime tests (wire v3): fixed test keys, configs and TOML lines."""

from __future__ import annotations

import ipaddress

from braid.core.keys import encode_key, generate_private_key, public_key
from braid.core.secure import PeerSpec, SecureConfig

# Deterministic test keys (used nowhere else).
LOCAL_PRIVATE = generate_private_key(lambda n: bytes(range(11, 11 + n)))
REMOTE_PRIVATE = generate_private_key(lambda n: bytes(range(77, 77 + n)))
SITE_B_PRIVATE = generate_private_key(lambda n: bytes(range(140, 140 + n)))
LOCAL_PUBLIC = public_key(LOCAL_PRIVATE)
REMOTE_PUBLIC = public_key(REMOTE_PRIVATE)
ALLOWED = ("10.0.0.0/8", "fd00::/8")


def local_security(
    *, private: bytes = LOCAL_PRIVATE, remote_public: bytes = REMOTE_PUBLIC, **kwargs: object
) -> SecureConfig:
    """The local portal's SecureConfig (its peer: the remote portal)."""
    return SecureConfig(
        private_key=private,
        peers=(PeerSpec(remote_public),),
        **kwargs,  # type: ignore[arg-type]
    )


def remote_security(*, allowed: tuple[str, ...] = ALLOWED, **kwargs: object) -> SecureConfig:
    """The remote portal's SecureConfig (one peer: the local portal)."""
    nets = tuple(ipaddress.ip_network(a) for a in allowed)
    return SecureConfig(
        private_key=REMOTE_PRIVATE,
        peers=(PeerSpec(LOCAL_PUBLIC, allowed_ips=nets, name="site"),),
        **kwargs,  # type: ignore[arg-type]
    )


def two_sites_security() -> SecureConfig:
    """The remote portal's SecureConfig with two sites: IPv4 from one, IPv6 from the other."""
    return SecureConfig(
        private_key=REMOTE_PRIVATE,
        peers=(
            PeerSpec(LOCAL_PUBLIC, allowed_ips=(ipaddress.ip_network("10.0.0.0/8"),), name="a"),
            PeerSpec(
                public_key(SITE_B_PRIVATE),
                allowed_ips=(ipaddress.ip_network("fd00::/8"),),
                name="b",
            ),
        ),
    )


def local_toml_keys() -> str:
    """Top-level TOML lines for a local portal config (put right after `role`)."""
    return (
        f'private_key = "{encode_key(LOCAL_PRIVATE)}"\n'
        f'[[peer]]\npublic_key = "{encode_key(REMOTE_PUBLIC)}"\n'
    )


def remote_toml_keys() -> str:
    """Top-level TOML lines for a remote portal config (put right after `role`)."""
    allowed = ", ".join(f'"{a}"' for a in ALLOWED)
    return (
        f'private_key = "{encode_key(REMOTE_PRIVATE)}"\n'
        f'[[peer]]\npublic_key = "{encode_key(LOCAL_PUBLIC)}"\nallowed_ips = [{allowed}]\n'
    )
