"""Test helpers shared by tests/io and tests/runtime: IP/UDP/TCP packets, network namespaces.

Namespaces and interfaces get unique names (pid + random suffix, <= 15 chars) and
are always removed (context managers with try/finally).
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import json
import multiprocessing
import os
import secrets
import shutil
import struct
import subprocess
import traceback
from collections.abc import Callable, Iterator
from typing import Any

CLONE_NEWNET = 0x40000000


# -- packets --------------------------------------------------------------------------


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def udp_packet(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    """A valid IPv4 or IPv6 UDP packet (checksums computed)."""
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    length = 8 + len(payload)
    if s.version == 4:
        pseudo = s.packed + d.packed + struct.pack("!BBH", 0, 17, length)
    else:
        pseudo = s.packed + d.packed + struct.pack("!IxxxB", length, 17)
    udp = struct.pack("!HHHH", sport, dport, length, 0) + payload
    csum = _checksum(pseudo + udp) or 0xFFFF
    udp = udp[:6] + struct.pack("!H", csum) + udp[8:]
    if s.version == 4:
        header = struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, 20 + length, 0, 0x4000, 64, 17, 0, s.packed, d.packed
        )
        header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
        return header + udp
    return struct.pack("!IHBB16s16s", 6 << 28, length, 17, 64, s.packed, d.packed) + udp


def tcp_segment(
    src: str,
    dst: str,
    sport: int,
    dport: int,
    seq: int,
    payload: bytes,
    *,
    flags: int = 0x10,
    ack: int = 1000,
    window: int = 500,
    options: bytes = b"",
    ttl: int = 64,
    ip_id: int = 1,
) -> bytes:
    """A valid IPv4 or IPv6 TCP segment (checksums computed); `flags` default ACK."""
    s, d = ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed
    offset = (20 + len(options)) // 4
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, offset << 4, flags, window, 0, 0)
    tcp += options + payload
    if len(s) == 4:
        pseudo = s + d + struct.pack("!BBH", 0, 6, len(tcp))
    else:
        pseudo = s + d + struct.pack("!IxxxB", len(tcp), 6)
    tcp = tcp[:16] + struct.pack("!H", _checksum(pseudo + tcp)) + tcp[18:]
    if len(s) == 4:
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), ip_id, 0x4000, ttl, 6, 0, s, d)
        return ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:] + tcp
    return struct.pack("!IHBB16s16s", 6 << 28, len(tcp), 6, ttl, s, d) + tcp


def parse_udp(packet: bytes) -> tuple[str, str, int, int, bytes] | None:
    """(src, dst, sport, dport, payload) of an IPv4/IPv6 UDP packet, None otherwise."""
    version = packet[0] >> 4
    if version == 4:
        ihl = (packet[0] & 0x0F) * 4
        if packet[9] != 17:
            return None
        src, dst = packet[12:16], packet[16:20]
        udp = packet[ihl:]
    elif version == 6:
        if packet[6] != 17:
            return None
        src, dst = packet[8:24], packet[24:40]
        udp = packet[40:]
    else:
        return None
    sport, dport, length = struct.unpack("!HHH", udp[:6])
    return (
        str(ipaddress.ip_address(src)),
        str(ipaddress.ip_address(dst)),
        sport,
        dport,
        udp[8:length],
    )


# -- namespaces -----------------------------------------------------------------------


def unique(prefix: str) -> str:
    """A short unique name (<= 15 chars) for a namespace or interface."""
    name = f"{prefix}{os.getpid() % 100000}{secrets.token_hex(2)}"
    assert len(name) <= 15, name
    return name


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=True, capture_output=True, text=True, timeout=30)


def ip(*args: str, ns: str | None = None) -> subprocess.CompletedProcess[str]:
    prefix = ("ip", "-n", ns) if ns else ("ip",)
    return run(*prefix, *args)


def can_use_netns() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None and os.path.exists("/dev/net/tun")


@contextlib.contextmanager
def netns(prefix: str = "bt") -> Iterator[str]:
    """A fresh network namespace (loopback up), deleted on exit."""
    name = unique(prefix)
    ip("netns", "add", name)
    try:
        ip("link", "set", "lo", "up", ns=name)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


def veth(ns_a: str, name_a: str, ns_b: str, name_b: str, addr_a: str, addr_b: str) -> None:
    """A veth pair between two namespaces, addressed and up (offloads off)."""
    ip("link", "add", name_a, "netns", ns_a, "type", "veth", "peer", "name", name_b, "netns", ns_b)
    for ns, name, addr in ((ns_a, name_a, addr_a), (ns_b, name_b, addr_b)):
        ip("addr", "add", addr, "dev", name, ns=ns)
        ip("link", "set", name, "up", ns=ns)


def link_stats(ns: str, name: str) -> dict[str, int]:
    """{"tx_packets", "rx_packets", "tx_bytes", "rx_bytes"} of an interface."""
    out = ip("-j", "-s", "link", "show", "dev", name, ns=ns).stdout
    data = json.loads(out)[0]["stats64"]
    return {
        "tx_packets": data["tx"]["packets"],
        "rx_packets": data["rx"]["packets"],
        "tx_bytes": data["tx"]["bytes"],
        "rx_bytes": data["rx"]["bytes"],
    }


def link_exists(ns: str, name: str) -> bool:
    result = subprocess.run(
        ["ip", "-n", ns, "link", "show", "dev", name], capture_output=True, timeout=30
    )
    return result.returncode == 0


def enter_netns(ns: str) -> None:
    """Move the calling thread (in a forked child: the process) into namespace `ns`."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{ns}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
    finally:
        os.close(fd)


def _child(conn: Any, fn: Callable[[], Any]) -> None:
    try:
        conn.send(("ok", fn()))
    except BaseException as exc:  # report anything to the parent
        conn.send(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
    finally:
        conn.close()


def in_child(fn: Callable[[], Any], *, timeout: float = 60.0) -> Any:
    """Run `fn` in a forked child process and return its (picklable) result.

    `fn` may switch namespaces (`enter_netns`) without affecting the test process.
    An exception in the child fails the caller with the child's traceback.
    """
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, fn))
    proc.start()
    child.close()
    try:
        if not parent.poll(timeout):
            raise TimeoutError(f"child did not finish within {timeout} s")
        status, value = parent.recv()
    finally:
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join()
    if status != "ok":
        raise AssertionError(f"in child process: {value}")
    return value
