"""InterfaceWatcher against the real kernel: a veth pair made and changed by the test."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from braid.io.ifwatch import InterfaceWatcher, interface_addresses

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (creates interfaces)")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def _collect(watcher: InterfaceWatcher, want: tuple[str, str], timeout: float = 2.0) -> list:
    events: list[tuple[str, str]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and want not in events:
        events += watcher.read_events()
        time.sleep(0.01)
    return events


def test_link_and_address_events_by_name() -> None:
    a, b = f"bifw{os.getpid() % 100000}a", f"bifw{os.getpid() % 100000}b"
    watcher = InterfaceWatcher()
    try:
        _ip("link", "add", a, "type", "veth", "peer", "name", b)
        _ip("link", "set", a, "up")
        _ip("link", "set", b, "up")
        assert (a, "up") in _collect(watcher, (a, "up"))
        assert not [x for x in interface_addresses(a) if "." in x]  # no IPv4 address yet
        _ip("addr", "add", "10.254.77.1/24", "dev", a)
        assert (a, "address") in _collect(watcher, (a, "address"))
        assert "10.254.77.1" in interface_addresses(a)
        _ip("link", "set", b, "down")  # a loses its carrier
        assert (a, "down") in _collect(watcher, (a, "down"))
        assert watcher.malformed == 0
    finally:
        subprocess.run(["ip", "link", "del", a], capture_output=True)
        watcher.close()
    assert interface_addresses("no-such-if0") == set()


def test_interface_addresses_lists_both_families_of_one_interface_only() -> None:
    a, b = f"bifa{os.getpid() % 100000}a", f"bifa{os.getpid() % 100000}b"
    try:
        _ip("link", "add", a, "type", "veth", "peer", "name", b)
        assert interface_addresses(a) == set()
        _ip("addr", "add", "10.254.78.1/24", "dev", a)
        _ip("addr", "add", "10.254.79.5/32", "dev", a)
        _ip("addr", "add", "10.254.80.1/24", "dev", b)  # the peer's: not a's
        _ip("-6", "addr", "add", "fd00:254::1/64", "dev", a, "nodad")
        assert interface_addresses(a) == {"10.254.78.1", "10.254.79.5", "fd00:254::1"}
        _ip("addr", "del", "10.254.78.1/24", "dev", a)
        assert interface_addresses(a) == {"10.254.79.5", "fd00:254::1"}
    finally:
        subprocess.run(["ip", "link", "del", a], capture_output=True)
    assert interface_addresses("no-such-if0") == set()
