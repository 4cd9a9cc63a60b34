"""A small UDP flooder/replayer for the security lab tests (run inside a namespace).

``flood.py initiations HOST PORT SECONDS RATE PUBKEY_B64`` sends bogus handshake initiations
(random content, a *valid* MAC1 for the portal's public key, so each one passes the cheapest
check and reaches the admission gate) at up to RATE per second, paced in bursts.
``flood.py replay HOST PORT SECONDS FILE RATE`` sends the datagrams of FILE (hex, one per line)
again and again, and also forged transport datagrams: the captured session id with new path
ids. Both listen on their socket for anything the portal sends back and print one JSON line:
``{"sent": n, "seconds": s, "rate": r, "received": m, "received_bytes": b}``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import sys
import time


def mac1_key(public: bytes) -> bytes:
    return hashlib.blake2s(b"mac1----" + public).digest()


def bogus_initiations(public: bytes, count: int) -> list[bytes]:
    key = mac1_key(public)
    out = []
    for _ in range(count):
        body = bytes((3, 5, 0, 0)) + os.urandom(4) + os.urandom(120)  # (version 3)
        mac1 = hashlib.blake2s(body, key=key, digest_size=16).digest()
        out.append(body + mac1 + bytes(16))
    return out


def forged(captured: list[bytes]) -> list[bytes]:
    out = []
    for data in captured[:64]:
        for path_id in (7, 42, 200):
            out.append(data[:3] + bytes((path_id,)) + data[4:])  # a new path id
            mutated = bytearray(data)
            mutated[3] = path_id
            mutated[-1] ^= 1
            out.append(bytes(mutated))
    return out


def capture(interface: str, port: int, seconds: float, path: str) -> int:
    """Write the UDP payloads sent to `port` seen on `interface` (hex lines)."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
    sock.bind((interface, 0))
    sock.settimeout(0.1)
    found: list[str] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end and len(found) < 2000:
        try:
            frame = sock.recv(65536)
        except TimeoutError:
            continue
        ip = frame[14:]
        if len(ip) < 28 or ip[9] != 17:
            continue
        ihl = (ip[0] & 0x0F) * 4
        udp = ip[ihl:]
        if int.from_bytes(udp[2:4], "big") == port:
            found.append(udp[8:].hex())
    with open(path, "w") as f:
        f.write("\n".join(found) + "\n")
    print(json.dumps({"captured": len(found)}))
    return 0


def main() -> int:
    if sys.argv[1] == "capture":
        return capture(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5])
    mode, host, port_text, seconds_text = sys.argv[1:5]
    port, seconds = int(port_text), float(seconds_text)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    sock.setblocking(False)
    target = (host, port)
    if mode == "initiations":
        rate = float(sys.argv[5])
        datagrams = bogus_initiations(base64.b64decode(sys.argv[6]), 256)
    else:
        rate = float(sys.argv[6])
        with open(sys.argv[5]) as f:
            captured = [bytes.fromhex(line.strip()) for line in f if line.strip()]
        datagrams = captured + forged(captured)
    burst = 200
    sent = received = received_bytes = 0
    start = time.monotonic()
    end = start + seconds
    n = len(datagrams)
    i = 0
    sendto = sock.sendto
    while True:
        now = time.monotonic()
        if now >= end:
            break
        allowed = (now - start) * rate
        if sent >= allowed:
            time.sleep(min(0.002, (sent - allowed) / rate))
            continue
        for _ in range(burst):
            try:
                sendto(datagrams[i], target)
                sent += 1
            except BlockingIOError:
                break
            except OSError:
                pass
            i += 1
            if i == n:
                i = 0
        while True:
            try:
                data = sock.recv(65536)
            except (BlockingIOError, OSError):
                break
            received += 1
            received_bytes += len(data)
    time.sleep(0.3)
    while True:
        try:
            data = sock.recv(65536)
        except (BlockingIOError, OSError):
            break
        received += 1
        received_bytes += len(data)
    elapsed = time.monotonic() - start
    print(
        json.dumps(
            {
                "sent": sent,
                "seconds": round(elapsed, 3),
                "rate": round(sent / elapsed),
                "received": received,
                "received_bytes": received_bytes,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
