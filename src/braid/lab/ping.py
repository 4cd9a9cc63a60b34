"""A small ICMP echo prober for latency under load (the lab does not depend on iputils).

``python -m braid.lab.ping DEST --interval 0.1 --duration 10`` sends one echo request every
interval for the duration, waits ``--wait`` seconds for stragglers, and prints one JSON line:
``{"sent": n, "received": m, "rtt_ms": [...]}`` (round-trip times of the replies, in the order
the requests were sent). ``--until-reply`` instead stops at the first reply (exit code 0) or
at the end of the duration (exit code 1): the lab uses it to wait for a path to come up.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import socket
import struct
import sys
import time

ICMP_ECHO_REQUEST = 8
ICMP_ECHO_REPLY = 0


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return int(~total & 0xFFFF)


def echo_request(ident: int, seq: int, payload: bytes) -> bytes:
    """An ICMP echo request with a correct checksum."""
    header = struct.pack("!BBHHH", ICMP_ECHO_REQUEST, 0, 0, ident, seq)
    csum = checksum(header + payload)
    return struct.pack("!BBHHH", ICMP_ECHO_REQUEST, 0, csum, ident, seq) + payload


def probe(
    dest: str, *, interval: float, duration: float, wait: float, until_reply: bool, size: int
) -> dict[str, object]:
    """Send echo requests to ``dest``; return counts and the RTTs of the replies in ms."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ident = os.getpid() & 0xFFFF
    payload = bytes(max(0, size))
    sent_at: dict[int, float] = {}
    rtts: dict[int, float] = {}
    seq = 0
    start = time.monotonic()
    next_send = start
    end = start + duration
    while True:
        now = time.monotonic()
        if now >= next_send and now < end:
            seq += 1
            sent_at[seq] = now
            with contextlib.suppress(OSError):  # no route yet: counted as lost
                sock.sendto(echo_request(ident, seq & 0xFFFF, payload), (dest, 0))
            next_send += interval
        if until_reply and rtts:
            break
        deadline = min(next_send, end) if now < end else end + wait
        if now >= end + wait or (now >= end and len(rtts) == len(sent_at)):
            break
        ready, _, _ = select.select([sock], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            continue
        packet = sock.recv(65535)
        received = time.monotonic()
        header_len = (packet[0] & 0x0F) * 4
        kind, _, _, rid, rseq = struct.unpack("!BBHHH", packet[header_len : header_len + 8])
        if kind != ICMP_ECHO_REPLY or rid != ident:
            continue
        for candidate, when in sent_at.items():
            if candidate & 0xFFFF == rseq and candidate not in rtts:
                rtts[candidate] = (received - when) * 1000.0
                break
    sock.close()
    return {
        "sent": len(sent_at),
        "received": len(rtts),
        "rtt_ms": [round(rtts[k], 3) for k in sorted(rtts)],
    }


def main(argv: list[str] | None = None) -> int:
    """Entry point; see the module docstring."""
    parser = argparse.ArgumentParser(prog="braid-lab-ping")
    parser.add_argument("dest")
    parser.add_argument("--interval", type=float, default=0.2)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--wait", type=float, default=1.0)
    parser.add_argument("--size", type=int, default=56)
    parser.add_argument("--until-reply", action="store_true")
    args = parser.parse_args(argv)
    try:
        result = probe(
            args.dest,
            interval=args.interval,
            duration=args.duration,
            wait=args.wait,
            until_reply=args.until_reply,
            size=args.size,
        )
    except KeyboardInterrupt:
        return 130
    sys.stdout.write(json.dumps(result) + "\n")
    if args.until_reply:
        return 0 if result["received"] else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
