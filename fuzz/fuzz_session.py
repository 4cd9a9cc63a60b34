"""Fuzz TunnelSession.receive_datagram with random and mutated datagrams.

Every datagram must be either accepted (a path id is returned) or dropped and counted
under exactly one reason in `statistics().drops`; no exception may escape, and the
session must keep working (timers in the future, sends and deliveries still possible).

    python fuzz/fuzz_session.py [--iterations N] [--seed S]

tests/core/test_fuzz.py runs `run()` with a fixed seed.
"""

from __future__ import annotations

import argparse
import random
import struct
import sys
from collections import Counter

from braid.core.session import SessionConfig, TunnelSession
from braid.core.wire import (
    ControlFrame,
    ControlKind,
    DataFrame,
    FeedbackEntry,
    FeedbackFrame,
    ProbeFrame,
    encode,
)

SESSION_ID = 0x0BADCAFE
_BOUNDARY_32 = (0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF)


def _ipv4(rng: random.Random) -> bytes:
    size = rng.choice((20, 28, 40, 60, 200, 1400))
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        size,
        0,
        0,
        64,
        rng.choice((1, 6, 17)),
        0,
        rng.randbytes(4),
        rng.randbytes(4),
    )
    return header + rng.randbytes(size - 20)


def valid_datagram(rng: random.Random, counters: Counter[str]) -> bytes:
    """A well-formed datagram of a random type for SESSION_ID on paths 0 to 3."""
    path_id = rng.randrange(4)
    counters[f"path_seq{path_id}"] += 1
    seq = counters[f"path_seq{path_id}"]
    tx = rng.randrange(2**32)
    kind = rng.random()
    if kind < 0.55:
        counters["session_seq"] += 1
        return encode(
            DataFrame(
                path_id,
                SESSION_ID,
                seq,
                tx,
                (counters["session_seq"] + rng.choice((0, 0, 0, -3, 5))) & 0xFFFFFFFF,
                rng.randrange(8),
                rng.randrange(64),
                _ipv4(rng),
            )
        )
    if kind < 0.75:
        entries = tuple(
            FeedbackEntry(
                rng.randrange(6),
                rng.choice((rng.randrange(2**32), rng.randrange(100))),
                rng.randrange(2**32),
                rng.randrange(2**32),
                rng.randrange(2**32),
            )
            for _ in range(rng.randint(1, 16))
        )
        return encode(FeedbackFrame(path_id, SESSION_ID, seq, tx, entries))
    if kind < 0.9:
        return encode(
            ProbeFrame(path_id, SESSION_ID, seq, tx, rng.random() < 0.5, rng.randrange(1401))
        )
    control = rng.choice((ControlKind.HELLO, ControlKind.PATH_DOWN) * 5 + (ControlKind.CLOSE,))
    value = bytes((rng.randrange(256),)) if control == ControlKind.PATH_DOWN else b""
    return encode(ControlFrame(path_id, SESSION_ID, seq, tx, control, value))


def mutate(rng: random.Random, data: bytes) -> bytes:
    """One to four random mutations of `data`."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        how = rng.randrange(7)
        if how == 0 and out:  # flip a byte
            out[rng.randrange(len(out))] = rng.randrange(256)
        elif how == 1:  # truncate
            del out[rng.randrange(len(out) + 1) :]
        elif how == 2:  # append garbage
            out += rng.randbytes(rng.randint(1, 40))
        elif how == 3 and len(out) >= 16:  # a header field to a boundary value
            offset = rng.choice((4, 12) * 5 + (8,))  # path_seq jumps age everything out
            out[offset : offset + 4] = rng.choice(_BOUNDARY_32).to_bytes(4, "big")
        elif how == 4 and out:  # a small field (version, type, flags, path, kind, count)
            index = rng.choice([i for i in (0, 1, 2, 3, 16) if i < len(out)])
            out[index] = rng.choice((0, 1, 2, 3, 4, 5, 16, 17, 254, 255))
        elif how == 5 and len(out) > 26:  # a DATA body field to a boundary value
            offset = rng.choice((16, 22))
            out[offset : offset + 4] = rng.choice(_BOUNDARY_32).to_bytes(4, "big")
        else:  # splice the tail of another random datagram
            out = out[: rng.randrange(len(out) + 1)] + rng.randbytes(rng.randint(0, 30))
    return bytes(out)


def run(iterations: int, seed: int) -> Counter[str]:
    """Feed `iterations` datagrams per role into sessions; returns outcome counts."""
    rng = random.Random(seed)
    outcomes: Counter[str] = Counter()
    for role in ("local", "remote"):
        counters: Counter[str] = Counter()
        now = 0.0
        session = _new_session(role, now)
        for index in range(iterations):
            if index % 2000 == 1999:  # fresh state now and then: startup paths get fuzzed too
                session = _new_session(role, now)
                counters.clear()
            now += rng.expovariate(1000)
            roll = rng.random()
            if roll < 0.35:
                data = valid_datagram(rng, counters)
            elif roll < 0.9:
                data = mutate(rng, valid_datagram(rng, counters))
            else:
                data = rng.randbytes(rng.randint(0, 80))
            before = session.statistics().drops
            try:
                result = session.receive_datagram(data, now=now)
            except Exception as exc:  # the property under test: never
                raise AssertionError(f"seed={seed}: {exc!r} escaped for {data.hex()}") from exc
            after = session.statistics().drops
            changed = {reason: after[reason] - before[reason] for reason in after}
            changed = {reason: delta for reason, delta in changed.items() if delta}
            if result is None:
                assert len(changed) == 1 and set(changed.values()) == {1}, (
                    f"seed={seed}: dropped but not counted once: {changed} {data.hex()}"
                )
                outcomes["drop:" + next(iter(changed))] += 1
            else:
                assert not changed, f"seed={seed}: accepted and counted: {data.hex()}"
                outcomes["accepted"] += 1
            if rng.random() < 0.05:
                session.send_packet(_ipv4(rng), now=now)
            if rng.random() < 0.1 and (timer := session.get_timer()) is not None:
                now = max(now, timer)
                session.handle_timer(now=now)
                after_timer = session.get_timer()
                assert after_timer is None or after_timer > now, f"seed={seed}: busy timer"
            session.datagrams_to_send(now=now)
            session.packets_to_deliver()
            while session.next_event() is not None:
                pass
            if session.closed:
                outcomes["closed"] += 1
                session = _new_session(role, now)
    return outcomes


def _new_session(role: str, now: float) -> TunnelSession:
    config = SessionConfig(reorder_limit_packets=256, reorder_limit_bytes=256 * 1500)
    session = TunnelSession(
        config,
        role="local" if role == "local" else "remote",
        session_id=SESSION_ID,
        now=now,
    )
    if role == "local":
        for path_id in range(3):
            session.add_path(path_id, now=now)
    return session


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=100_000, help="datagrams per role")
    parser.add_argument("--seed", type=int, default=random.randrange(2**32))
    args = parser.parse_args(argv)
    print(f"seed={args.seed} iterations={args.iterations} per role")
    outcomes = run(args.iterations, args.seed)
    for key, count in sorted(outcomes.items()):
        print(f"  {key:24} {count}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
