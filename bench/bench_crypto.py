"""Cost of braid's cryptography: per-datagram seal/open, the handshake, cheap rejection.

Run: .venv/bin/python bench/bench_crypto.py [--datagrams 20000] [--handshakes 300]

Prints microseconds per operation (datagrams: best of 3 runs; handshakes: mean) and the
single-core data-plane ceiling implied by the per-datagram cost. A benchmark, not a test:
nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import struct
import time
from collections.abc import Callable

from braid.core.cookie import HandshakeGate, source_bytes, source_key
from braid.core.handshake import (
    INITIATION_LEN,
    HandshakeError,
    Identity,
    Peer,
    consume_initiation,
    consume_response,
    create_initiation,
    create_response,
)
from braid.core.keys import CryptoError, KeyRing, SessionKeys, generate_private_key

PACKET = 1400
HEADER = struct.Struct(">BBBBIII")


def measure(fn: Callable[[], object], seconds: float) -> float:
    """Microseconds per call of `fn`, best of 5 runs of about `seconds` / 5 each."""
    n = 1
    while True:  # calibrate
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        elapsed = time.perf_counter() - t0
        if elapsed > seconds / 20:
            break
        n *= 2
    per_run = max(1, int(n * (seconds / 5) / elapsed))
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(per_run):
            fn()
        best = min(best, (time.perf_counter() - t0) / per_run)
    return best * 1e6


def report(name: str, us: float, *, packet: bool = False) -> None:
    extra = f"   ({PACKET * 8 / us / 1000:.2f} Gbit/s on one core)" if packet else ""
    print(f"{name:<52} {us:9.2f} us{extra}")


def _rings(auth_only: bool) -> tuple[KeyRing, KeyRing]:
    key_a, key_b = os.urandom(32), os.urandom(32)
    a, b = KeyRing(is_initiator=True), KeyRing(is_initiator=False)
    a.install(
        SessionKeys(key_a, key_b, key_id=1, created_at=0, is_initiator=True, auth_only=auth_only),
        now=0.0,
    )
    b.install(
        SessionKeys(key_b, key_a, key_id=1, created_at=0, is_initiator=False, auth_only=auth_only),
        now=0.0,
    )
    return a, b


def datagram_benchmarks(count: int) -> None:
    body = os.urandom(PACKET)
    headers = [HEADER.pack(2, 1, 0, p, 0xDEADBEEF, 0, 0) for p in range(4)]
    for auth_only in (False, True):
        mode = "auth-only" if auth_only else "encrypted"
        seal_us = open_us = reject_us = float("inf")
        for _ in range(3):
            a, b = _rings(auth_only)
            seal = a.seal_datagram
            t0 = time.perf_counter()
            sealed = [seal(headers[i & 3], body, now=1.0) for i in range(count)]
            seal_us = min(seal_us, (time.perf_counter() - t0) / count * 1e6)
            open_ = b.open_datagram
            t0 = time.perf_counter()
            for data in sealed:
                open_(data, now=1.0)
            open_us = min(open_us, (time.perf_counter() - t0) / count * 1e6)
            forged = [d[:-1] + bytes([d[-1] ^ 1]) for d in sealed[: count // 4]]
            _a2, b2 = _rings(auth_only)
            t0 = time.perf_counter()
            for data in forged:
                with contextlib.suppress(CryptoError):
                    b2.open_datagram(data, now=1.0)
            reject_us = min(reject_us, (time.perf_counter() - t0) / len(forged) * 1e6)
        report(f"seal 1400-byte datagram ({mode})", seal_us, packet=True)
        report(f"open 1400-byte datagram ({mode})", open_us, packet=True)
        report(f"reject a forged 1400-byte datagram ({mode})", reject_us)


def handshake_benchmarks(count: int, seconds: float) -> None:
    rng = random.Random(1).randbytes
    local, remote = Identity(generate_private_key(rng)), Identity(generate_private_key(rng))
    remote_peer, local_peer = Peer(remote.public_key), Peer(local.public_key)
    peers = {local.public_key: local_peer}
    totals = [0.0, 0.0, 0.0, 0.0]
    clock = time.perf_counter
    for i in range(count):
        t0 = clock()
        msg, pending = create_initiation(
            identity=local,
            peer=remote_peer,
            session_id=1,
            key_id=0,
            path_id=0,
            wall_time=1_700_000_000.0 + i,
            now=float(i),
            rng=os.urandom,
        )
        t1 = clock()
        init = consume_initiation(msg, identity=remote, peers=peers, now=float(i))
        t2 = clock()
        resp, _ = create_response(init, now=float(i), rng=os.urandom)
        t3 = clock()
        consume_response(resp, pending, identity=local, now=float(i))
        t4 = clock()
        for j, dt in enumerate((t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            totals[j] += dt
    names = ("create_initiation", "consume_initiation", "create_response", "consume_response")
    for name, total in zip(names, totals, strict=True):
        report(name, total / count * 1e6)
    report("whole handshake (both sides)", sum(totals) / count * 1e6)

    junk = bytes([2, 5, 0, 0]) + os.urandom(INITIATION_LEN - 4)

    def reject() -> None:
        with contextlib.suppress(HandshakeError):
            consume_initiation(junk, identity=remote, peers=peers, now=0.0)

    report("consume_initiation of garbage (MAC1 reject)", measure(reject, seconds))
    gate = HandshakeGate(public_key=remote.public_key, mac1_key=remote.mac1_key, rng=rng, now=0.0)
    src, key = source_bytes("192.0.2.1", 1), source_key("192.0.2.1")

    def gate_reject() -> None:
        gate.check(junk, key, src, now=0.0)

    report("HandshakeGate.check of garbage (MAC1 reject)", measure(gate_reject, seconds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--datagrams", type=int, default=20000, help="datagrams per run")
    parser.add_argument("--handshakes", type=int, default=300, help="handshakes to time")
    parser.add_argument("--seconds", type=float, default=0.5, help="time per micro-benchmark")
    args = parser.parse_args()
    datagram_benchmarks(args.datagrams)
    handshake_benchmarks(args.handshakes, args.seconds)


if __name__ == "__main__":
    main()
