"""Per-stage cost of braid's data plane in microseconds per packet (1400-byte packets).

    .venv/bin/python bench/bench_stages.py [--packets N] [--json FILE]

Stages, in the order a packet meets them:
- TUN read / write: a real TUN device in a fresh network namespace (``bbench-<pid>-tun``,
  removed afterwards; needs root, else skipped). Reads take packets the kernel routed into
  the device (a UDP socket sent them, untimed); writes hand IPv4/UDP packets to the kernel,
  addressed past the device, which drops them after routing (forwarding is off). Then a
  second device with IFF_VNET_HDR: one TCP segment per write (``write``), and runs of
  consecutive segments joined into GSO writes (``write_batch``, ``braid.io.coalesce``;
  also dropped after routing, so the kernel's receive work for a joined segment is not in
  it), per inner packet.
- coalesce: ``braid.io.coalesce.coalesce`` alone on runs of full TCP segments.
- tso (not used): cutting a 64 KB TCP segment into 1400-byte packets with checksums in
  Python, per packet: what reads with TUN TSO would cost the portal (against a read).
- framing: wire v1 ``encode_data`` / ``decode_datagram`` (bench_core).
- seal / open: the sealed record of wire v2 (ChaCha20-Poly1305 by ``KeyRing``, bench_crypto).
- scheduling: each scheduler's ``select_path`` over 3 paths (bench_core).
- reordering: ``ReorderBuffer`` push + pop, in order and with two paths 20 packets apart.
- whole core session: a local and a remote ``TunnelSession`` with two paths up ("fixed"
  pacing at 10 Gbit/s, feedback returned): send and receive per packet, unsealed.
- UDP send / receive: a pair of connected UDP sockets on loopback (in the same namespace),
  1450-byte datagrams, ``send`` and ``recv`` as the portal calls them; then batched as the
  portals now do (``braid.io.udp.SegmentSender``: UDP GSO, runs of 32 datagrams per
  ``sendmsg``; ``SegmentReceiver``: UDP GRO), per datagram.

Not a test: numbers depend on the machine. Each figure is the best of 3 runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_core
import bench_crypto

from braid.core.session import SessionConfig, TunnelSession
from braid.io.coalesce import coalesce

PACKET = 1400
DATAGRAM = 1450  # a sealed 1400-byte packet is about this big on the wire
BATCH = 256  # packets queued before a timed batch (below the kernel queue limits)
GSO_RUN = 32  # datagrams per UDP GSO send in the batched socket benchmark
TUN_NAME = "bbt0"
TUN_ADDRESS = "10.77.0.1/24"
TUN_PEER = "10.77.0.2"  # routed into the TUN
TUN_DROP = "10.77.1.2"  # written packets go here: routed, then dropped (no forwarding)
TUN_GSO_NAME = "bbt1"  # with IFF_VNET_HDR
TUN_GSO_DROP = "10.77.3.0/24"


def ipv4_udp(src: str, dst: str, size: int = PACKET) -> bytes:
    """An IPv4/UDP packet of ``size`` bytes with a correct header checksum."""
    header = bytearray(
        struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0,
            size,
            0,
            0x4000,
            64,
            17,
            0,
            socket.inet_aton(src),
            socket.inet_aton(dst),
        )
    )
    total = sum(struct.unpack("!10H", header))
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    struct.pack_into("!H", header, 10, ~total & 0xFFFF)
    udp = struct.pack("!HHHH", 40000, 9, size - 20, 0)
    return bytes(header) + udp + bytes(size - 28)


def timed_batches(total: int, prepare: Callable[[int], None], body: Callable[[int], int]) -> float:
    """Microseconds per packet of ``body(n)`` over ``total`` packets in batches.

    ``prepare(n)`` (untimed) readies a batch; ``body(n)`` handles it and returns how many
    packets it really handled. Best of 3 runs.
    """
    best = float("inf")
    for _ in range(3):
        done = 0
        spent = 0.0
        while done < total:
            n = min(BATCH, total - done)
            prepare(n)
            start = time.perf_counter()
            handled = body(n)
            spent += time.perf_counter() - start
            if handled <= 0:
                raise RuntimeError("a batch handled no packet")
            done += handled
        best = min(best, spent / done)
    return best * 1e6


# -- UDP sockets ----------------------------------------------------------------------------


def bench_udp(count: int) -> dict[str, float]:
    """send() and recv() of 1450-byte datagrams between connected loopback UDP sockets."""
    from braid.io.udp import (
        SOCKET_BUFFER_BYTES,
        SegmentReceiver,
        SegmentSender,
        _set_buffers,
    )

    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for sock in (rx, tx):
            _set_buffers(sock, SOCKET_BUFFER_BYTES)
        rx.bind(("127.0.0.1", 0))
        tx.bind(("127.0.0.1", 0))
        rx.connect(tx.getsockname())
        tx.connect(rx.getsockname())
        rx.setblocking(False)
        data = os.urandom(DATAGRAM)

        def drain() -> int:
            n = 0
            with contextlib.suppress(BlockingIOError):
                while True:
                    rx.recv(65535)
                    n += 1
            return n

        def send(n: int) -> int:
            send_ = tx.send
            for _ in range(n):
                send_(data)
            return n

        def receive(n: int) -> int:
            recv = rx.recv
            got = 0
            with contextlib.suppress(BlockingIOError):
                for _ in range(n):
                    recv(65535)
                    got += 1
            return got

        send_us = timed_batches(count, lambda n: drain() and None, send)
        drain()
        receive_us = timed_batches(count, lambda n: send(n) and None, receive)
        drain()
        # Batched: runs of GSO_RUN datagrams, one sendmsg each (UDP GSO), read back with GRO.
        sender = SegmentSender()
        run = [data] * GSO_RUN

        def send_gso(n: int) -> int:
            done = 0
            while done < n:
                sender.send(tx, run)
                done += GSO_RUN
            return done

        gso_us = timed_batches(count, lambda n: drain() and None, send_gso)
        drain()
        receiver = SegmentReceiver.enable(rx)
        results = {
            "udp socket: send (loopback)": send_us,
            "udp socket: recv (loopback)": receive_us,
            f"udp socket: send, GSO runs of {GSO_RUN} (loopback)": gso_us,
        }
        if receiver is not None and sender.enabled:

            def receive_gro(n: int) -> int:
                got = 0
                with contextlib.suppress(BlockingIOError):
                    while got < n:
                        got += len(receiver.receive()[0])
                return got

            results[f"udp socket: recv, GRO runs of {GSO_RUN} (loopback)"] = timed_batches(
                count, lambda n: send_gso(n) and None, receive_gro
            )
    finally:
        rx.close()
        tx.close()
    return results


# -- TUN ------------------------------------------------------------------------------------


def bench_tun_here(count: int) -> dict[str, float]:
    """TUN read and write in the current namespace (run inside a fresh one)."""
    from braid.io.tun import TunDevice

    with TunDevice.open(TUN_NAME, mtu=PACKET, addresses=[TUN_ADDRESS]) as tun:
        subprocess.run(
            ["ip", "route", "add", TUN_DROP.rsplit(".", 1)[0] + ".0/24", "dev", TUN_NAME],
            check=True,
        )
        subprocess.run(["ip", "link", "set", TUN_NAME, "txqueuelen", "1000"], check=True)
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sender.connect((TUN_PEER, 9))
        payload = bytes(PACKET - 28)
        out = ipv4_udp(TUN_PEER, TUN_DROP)

        def drain() -> None:
            with contextlib.suppress(BlockingIOError):
                while True:
                    tun.read()

        def fill(n: int) -> None:
            drain()
            for _ in range(n):
                sender.send(payload)

        def read(n: int) -> int:
            read_ = tun.read
            got = 0
            with contextlib.suppress(BlockingIOError):
                for _ in range(n):
                    read_()
                    got += 1
            return got

        def write(n: int) -> int:
            write_ = tun.write
            for _ in range(n):
                write_(out)
            return n

        read_us = timed_batches(count, fill, read)
        write_us = timed_batches(count, lambda n: None, write)
        sender.close()
    results = {"tun: read": read_us, "tun: write": write_us}
    with TunDevice.open(TUN_GSO_NAME, mtu=PACKET, vnet_hdr=True) as gso:
        subprocess.run(["ip", "route", "add", TUN_GSO_DROP, "dev", TUN_GSO_NAME], check=True)
        run = tcp_run(BATCH)

        def write_one(n: int) -> int:
            write_ = gso.write
            for packet in run[:n]:
                write_(packet)
            return n

        def write_joined(n: int) -> int:
            written, _ = gso.write_batch(run[:n])
            return written

        results["tun: write, virtio-net header, one packet per write"] = timed_batches(
            count, lambda n: None, write_one
        )
        results["tun: write_batch, TCP segments joined (GSO, 46 per write)"] = timed_batches(
            count, lambda n: None, write_joined
        )
    return results


def tcp_run(count: int, size: int = PACKET) -> list[bytes]:
    """`count` consecutive full TCP segments of one flow (IPv4, `size` bytes each), to
    `TUN_GSO_DROP`'s network (routed into the TUN's drop route)."""
    packets = []
    payload = bytes(size - 40)
    for i in range(count):
        ip = struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, size, i, 0x4000, 64, 6, 0,
            bytes([10, 77, 0, 1]), bytes([10, 77, 3, 2]),
        )  # fmt: skip
        tcp = struct.pack("!HHIIBBHHH", 40000, 80, 1 + i * (size - 40), 1, 0x50, 0x10, 500, 0, 0)
        packets.append(ip + tcp + payload)
    return packets


def cut_tso(packet: bytes, mss: int) -> list[bytes]:
    """Cut an IPv4 TCP segment longer than `mss` into packets with complete IP and TCP
    checksums: what a portal would have to do per packet if it offered TSO to the
    kernel on its TUN reads (not done; measured to show why)."""
    header_len = 20 + (packet[32] >> 4) * 4
    header = packet[:header_len]
    payload = memoryview(packet)[header_len:]
    seq = int.from_bytes(packet[24:28])
    ip_id = int.from_bytes(packet[4:6])
    addresses = packet[12:20]
    flags = packet[33]
    size = len(payload)
    out = []
    for index, offset in enumerate(range(0, size, mss)):
        chunk = bytes(payload[offset : offset + mss])
        head = bytearray(header)
        total = header_len + len(chunk)
        head[2:4] = total.to_bytes(2)
        head[4:6] = ((ip_id + index) & 0xFFFF).to_bytes(2)
        head[10:12] = b"\0\0"
        words = sum(struct.unpack_from("!10H", head))
        words = (words & 0xFFFF) + (words >> 16)
        head[10:12] = (~((words & 0xFFFF) + (words >> 16)) & 0xFFFF).to_bytes(2)
        head[24:28] = ((seq + offset) & 0xFFFFFFFF).to_bytes(4)
        if offset + mss < size:
            head[33] = flags & ~0x09  # PSH and FIN only on the last
        head[36:38] = b"\0\0"
        pseudo = addresses + b"\0\x06" + (total - 20).to_bytes(2)
        data = pseudo + bytes(head[20:]) + chunk
        if len(data) % 2:
            data += b"\0"
        folded = int.from_bytes(data) % 0xFFFF  # the ones' complement sum, by big integer
        head[36:38] = (~folded & 0xFFFF).to_bytes(2)
        out.append(bytes(head) + chunk)
    return out


def bench_tso_cut(count: int) -> dict[str, float]:
    """`cut_tso` on 64 KB segments (46 packets of 1400 bytes), per packet."""
    mss = PACKET - 40  # (no TCP options in `tcp_run`'s segments)
    run = tcp_run(1, size=40 + 46 * mss)[0]

    def cut(n: int) -> int:
        done = 0
        while done < n:
            done += len(cut_tso(run, mss))
        return done

    return {
        "tso (not used): cut a 64 KB TCP segment, checksums, in Python": timed_batches(
            count, lambda n: None, cut
        )
    }


def bench_coalesce(count: int) -> dict[str, float]:
    """`braid.io.coalesce` alone: joining runs of full TCP segments, per packet."""
    run = tcp_run(BATCH)

    def join(n: int) -> int:
        return sum(c for _, c in coalesce(run[:n]))

    return {"coalesce: join TCP segments (runs of 46)": timed_batches(count, lambda n: None, join)}


def bench_tun(count: int) -> dict[str, float]:
    """Run ``bench_tun_here`` in a fresh namespace (a child process); {} when not root."""
    if os.geteuid() != 0:
        print("  (tun: skipped, needs root)", file=sys.stderr)
        return {}
    ns = f"bbench-{os.getpid()}-tun"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        argv = ["ip", "netns", "exec", ns, sys.executable, __file__, "--tun-child"]
        return bench_core.child_json([*argv, "--packets", str(count)], timeout=120)
    except RuntimeError as exc:
        print(f"  (tun: failed: {exc})", file=sys.stderr)
        return {}
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


# -- crypto ---------------------------------------------------------------------------------


def bench_seal_open(count: int) -> dict[str, float]:
    """Seal and open of a 1400-byte body (encrypted mode), best of 3."""
    body = os.urandom(PACKET)
    headers = [bench_crypto.HEADER.pack(2, 1, 0, p, 0xDEADBEEF, 0, 0) for p in range(4)]
    seal_us = open_us = float("inf")
    for _ in range(3):
        a, b = bench_crypto._rings(auth_only=False)
        seal = a.seal_datagram
        start = time.perf_counter()
        sealed = [seal(headers[i & 3], body, now=1.0) for i in range(count)]
        seal_us = min(seal_us, (time.perf_counter() - start) / count * 1e6)
        open_ = b.open_datagram
        start = time.perf_counter()
        for data in sealed:
            open_(data, now=1.0)
        open_us = min(open_us, (time.perf_counter() - start) / count * 1e6)
    return {"crypto: seal (ChaCha20-Poly1305)": seal_us, "crypto: open": open_us}


# -- whole core session ---------------------------------------------------------------------


def session_pair(paths: int = 2) -> tuple[TunnelSession, TunnelSession, float]:
    """A local and a remote TunnelSession whose paths are up ("fixed" 10 Gbit/s pacing)."""
    config = SessionConfig(congestion_control="fixed", max_queued_datagrams=1 << 20)
    local = TunnelSession(config, role="local", session_id=bench_core.SID, now=0.0)
    remote = TunnelSession(config, role="remote", session_id=bench_core.SID, now=0.0)
    for path_id in range(paths):
        local.add_path(path_id, rate_bps=10_000_000_000, now=0.0)
    now = bench_core.exchange(local, remote, 0.0, rounds=20, step=0.001)
    # Full-size packets start each path's MTU probing (paths start at 1208 bytes and would
    # carry every 1400-byte packet in two fragments): let it finish, both ways.
    for sender in (local, remote):
        for flow in range(256):  # enough that every path carries some
            sender.send_packet(bench_core.ip_packet(flow), now=now)
    now = bench_core.exchange(local, remote, now, rounds=100, step=0.005)
    remote.packets_to_deliver()
    local.packets_to_deliver()
    for session in (local, remote):
        # (earliest-arrival keeps an idle 10 Gbit/s pair on path 0: only paths that
        # carried data have probed)
        stats = session.statistics().paths
        mtus = [p.mtu for p in stats if p.datagrams_sent > 100]
        if not mtus or min(mtus) < 1426:
            raise RuntimeError(f"path MTU probing did not finish in the benchmark: {mtus}")
    return local, remote, now


def bench_session_pair(count: int) -> dict[str, float]:
    """TunnelSession send and receive with paths up and feedback returned (no sealing).

    Packets are offered 10 us apart (about 1.1 Gbit/s) in chunks of 64; after each chunk the
    remote receives them and its feedback returns to the local session (untimed).
    """
    packets = [bench_core.ip_packet(flow) for flow in range(64)]
    send_best = receive_best = float("inf")
    for _ in range(3):
        local, remote, now = session_pair()
        send_time = receive_time = 0.0
        sent = received = 0
        clock = time.perf_counter
        for chunk in range(0, count, 64):
            out: list[tuple[int, bytes]] = []
            start = clock()
            for i in range(chunk, min(chunk + 64, count)):
                now += 1e-5
                local.send_packet(packets[i & 63], now=now)
                out += local.datagrams_to_send(now=now)
            send_time += clock() - start
            sent += min(64, count - chunk)
            start = clock()
            for _path, data in out:
                remote.receive_datagram(data, now=now)
                received += len(remote.packets_to_deliver())
            receive_time += clock() - start
            for _path, data in remote.datagrams_to_send(now=now):
                local.receive_datagram(data, now=now)
            local.datagrams_to_send(now=now)
        send_best = min(send_best, send_time / sent)
        receive_best = min(receive_best, receive_time / max(received, 1))
    return {
        "session: send_packet + datagrams_to_send (paths up)": send_best * 1e6,
        "session: receive_datagram + packets_to_deliver": receive_best * 1e6,
    }


# -- all ------------------------------------------------------------------------------------


def run_all(count: int, progress: Callable[[str], None] = lambda _: None) -> dict[str, float]:
    """Every stage: name -> microseconds per packet."""
    results: dict[str, float] = {}
    stages: list[tuple[str, Callable[[int], dict[str, float]]]] = [
        ("tun", bench_tun),
        ("coalesce", bench_coalesce),
        ("tso", bench_tso_cut),
        ("framing", bench_core.bench_wire),
        ("seal/open", bench_seal_open),
        ("scheduling", bench_core.bench_schedulers),
        ("reordering", bench_core.bench_reorder),
        ("session", bench_session_pair),
        ("udp", bench_udp),
    ]
    for name, stage in stages:
        progress(f"micro: {name}")
        results.update(stage(count))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--packets", type=int, default=50_000)
    parser.add_argument("--json", type=Path, help="write name -> us/packet here")
    parser.add_argument("--tun-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.tun_child:
        print(json.dumps(bench_tun_here(args.packets)))
        return 0
    print(f"python {sys.version.split()[0]}, {args.packets} packets of {PACKET} bytes, best of 3")
    results = run_all(args.packets)
    for name, micros in results.items():
        print(f"  {name:50} {micros:6.2f} us/packet  ({1 / micros:5.2f} Mpps)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
