"""`braid up` as a real process in network namespaces (root): ready line, stats, a packet
through the tunnel over two pinned links, clean exit 0 on SIGTERM/SIGINT with the TUN removed,
and one-line failures."""

from __future__ import annotations

import json
import queue
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from iotest import (
    can_use_netns,
    enter_netns,
    in_child,
    link_exists,
    link_stats,
    netns,
    unique,
    veth,
)
from seckeys import local_toml_keys, remote_toml_keys

from braid.io.udp import open_path_socket

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not can_use_netns(), reason="needs root, ip and /dev/net/tun"),
]


class Braid:
    """`ip netns exec NS python -m braid up CONFIG --stats FILE`, with its stderr lines."""

    def __init__(self, ns: str, config: Path, stats: Path | None = None) -> None:
        args = ["ip", "netns", "exec", ns, sys.executable, "-m", "braid", "up", str(config)]
        if stats is not None:
            args += ["--stats", str(stats)]
        self.proc = subprocess.Popen(
            args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_line(self, fragment: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        for seen in self.lines:
            if fragment in seen:
                return seen
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
            if fragment in line:
                return line
        raise AssertionError(f"no line with {fragment!r}; stderr so far: {self.lines}")

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        while True:  # collect the remaining lines
            try:
                line = self._queue.get(timeout=5)
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_up_reports_ready_writes_stats_and_stops_cleanly(tmp_path: Path, signum: int) -> None:
    tun = unique("btr")
    with netns("btd") as ns:
        config = write(
            tmp_path / "remote.toml",
            f'role = "remote"\n{remote_toml_keys()}[tunnel]\nname = "{tun}"\naddress = "10.99.0.1/30"\n'
            f'routes = ["10.1.0.0/24"]\n[listen]\naddress = "127.0.0.1"\nport = 7100\n',
        )
        stats = tmp_path / "stats.json"
        braid = Braid(ns, config, stats)
        try:
            braid.wait_line("braid: up")
            assert link_exists(ns, tun)
            routes = subprocess.run(
                ["ip", "-n", ns, "route", "show", "dev", tun], capture_output=True, text=True
            ).stdout
            assert "10.1.0.0/24" in routes
            deadline = time.monotonic() + 5
            while not stats.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            doc = json.loads(stats.read_text())
            assert doc["role"] == "remote" and doc["tunnel"] == tun and doc["sessions"] == []
            code = braid.stop(signum)
        finally:
            braid.kill()
        assert code == 0, braid.lines
        assert not link_exists(ns, tun)
        assert braid.lines[-1] == "braid: down"
        assert not any("Traceback" in line for line in braid.lines)
        start = next(line for line in braid.lines if "remote portal" in line)
        assert f"tunnel {tun} 10.99.0.1/30 mtu 1400" in start
        assert "listening on 127.0.0.1:7100/udp" in start


def test_two_portals_carry_a_datagram_over_two_pinned_links(tmp_path: Path) -> None:
    ltun, rtun = unique("btl"), unique("btr")
    la, lb, ra, rb = unique("la"), unique("lb"), unique("ra"), unique("rb")
    with netns("bts") as site, netns("bth") as hub:
        veth(site, la, hub, ra, "10.81.1.2/24", "10.81.1.1/24")
        veth(site, lb, hub, rb, "10.81.2.2/24", "10.81.2.1/24")
        remote_cfg = write(
            tmp_path / "remote.toml",
            f'role = "remote"\n{remote_toml_keys()}[tunnel]\nname = "{rtun}"\naddress = "10.99.0.1/30"\n'
            '[listen]\naddress = "0.0.0.0"\nport = 7100\n',
        )
        local_cfg = write(
            tmp_path / "local.toml",
            f'role = "local"\n{local_toml_keys()}[tunnel]\nname = "{ltun}"\naddress = "10.99.0.2/30"\n'
            '[session]\nscheduler = "round-robin"\n'
            f'[[link]]\nname = "a"\ninterface = "{la}"\nremote = "10.81.1.1:7100"\n'
            f'[[link]]\nname = "b"\ninterface = "{lb}"\nremote = "10.81.2.1:7100"\n',
        )
        stats = tmp_path / "local.json"
        remote = Braid(hub, remote_cfg)
        local: Braid | None = None
        try:
            remote.wait_line("braid: up")
            local = Braid(site, local_cfg, stats)
            start = local.wait_line("local portal")
            assert (
                f"paths 0=a (dev {la}) -> 10.81.1.1:7100; 1=b (dev {lb}) -> 10.81.2.1:7100" in start
            )
            local.wait_line("braid: up")
            local.wait_line("path 0 (a) up")
            local.wait_line("path 1 (b) up")
            remote.wait_line("session ")
            before = link_stats(site, la)["tx_packets"], link_stats(site, lb)["tx_packets"]

            def exchange() -> list[bytes]:
                # server in the hub on its tunnel address, client at the site: via braid.
                enter_netns(hub)
                import socket

                server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                server.bind(("10.99.0.1", 5555))
                enter_netns(site)
                client = open_path_socket(remote=("10.99.0.1", 5555), source="10.99.0.2")
                replies = []
                for i in range(50):
                    client.send(b"through braid %d" % i)
                    assert select.select([server], [], [], 3)[0], f"{i}: nothing came through"
                    data, address = server.recvfrom(2000)
                    assert address[0] == "10.99.0.2"
                    server.sendto(data.upper(), address)
                    assert select.select([client], [], [], 3)[0], f"{i}: no reply came back"
                    replies.append(client.recv(2000))
                return replies

            try:
                replies = in_child(exchange)
            except AssertionError as error:
                time.sleep(1.2)  # one stats period
                detail = stats.read_text() if stats.exists() else "no stats"
                local.stop()
                remote.stop()
                raise AssertionError(
                    f"{error}\nlocal: {local.lines}\nremote: {remote.lines}\n{detail}"
                ) from None
            assert replies == [b"THROUGH BRAID %d" % i for i in range(50)]
            after = link_stats(site, la)["tx_packets"], link_stats(site, lb)["tx_packets"]
            # round-robin: both links carried the tunnelled datagrams
            assert after[0] - before[0] >= 20 and after[1] - before[1] >= 20, (before, after)

            time.sleep(1.2)  # one stats period
            doc = json.loads(stats.read_text())
            (session,) = doc["sessions"]
            assert [(p["name"], p["up"]) for p in session["paths"]] == [("a", True), ("b", True)]
            assert session["packets_delivered"] >= 50

            assert local.stop() == 0, local.lines
            # The veths' IPv6 link-local addresses arrive (after DAD) while the session
            # runs: an address event that leaves the path's source in place, no rebind.
            assert not [line for line in local.lines if "rebound" in line], local.lines
            remote.wait_line("ended (peer)")  # the CLOSE reached the remote portal
            assert not link_exists(site, ltun)
            assert remote.stop() == 0, remote.lines
            assert not link_exists(hub, rtun)
        finally:
            remote.kill()
            if local is not None:
                local.kill()


def test_up_fails_in_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    tun = unique("btf")
    with netns("btf") as ns:
        config = write(
            tmp_path / "local.toml",
            f'role = "local"\n{local_toml_keys()}[tunnel]\nname = "{tun}"\naddress = "10.99.0.2/30"\n'
            '[[link]]\nname = "dsl"\ninterface = "nosuch0"\nremote = "10.81.1.1:7100"\n',
        )
        result = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, "-m", "braid", "up", str(config)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 1
        assert result.stderr == (
            "braid: link dsl: interface 'nosuch0' does not exist; check the link's interface"
            " (ip link)\n"
        )
        assert not link_exists(ns, tun)
        # a listen port in use: the TUN opened after the socket fails first
        busy = write(
            tmp_path / "remote.toml",
            f'role = "remote"\n{remote_toml_keys()}[tunnel]\nname = "{tun}"\naddress = "10.99.0.1/30"\n'
            '[listen]\naddress = "10.200.0.1"\nport = 7100\n',
        )
        result = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, "-m", "braid", "up", str(busy)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 1
        assert result.stderr.splitlines() == [
            "braid: listen 10.200.0.1:7100: 10.200.0.1 is not an address of this host;"
            " use one of its addresses or 0.0.0.0"
        ]
        assert not link_exists(ns, tun)


def test_up_without_privileges_fails_in_one_line() -> None:
    """Not root: one line naming the fix, exit code 1 (the CLI run in a child that drops root)."""
    import shutil
    import socket
    import tempfile

    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    folder = Path(tempfile.mkdtemp(prefix="braid-test-"))
    try:
        folder.chmod(0o755)
        config = write(
            folder / "remote.toml",
            f'role = "remote"\n{remote_toml_keys()}[tunnel]\naddress = "10.99.0.1/30"\n'
            f'[listen]\naddress = "127.0.0.1"\nport = {port}\n',
        )
        config.chmod(0o644)

        def as_nobody() -> tuple[int, str]:
            import contextlib
            import io
            import os

            import braid.control.up  # noqa: F401 - imported while the stdlib is readable
            from braid.control.cli import main

            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                code = main(["up", str(config)])
            return code, err.getvalue()

        code, stderr = in_child(as_nobody)
    finally:
        shutil.rmtree(folder)
    assert code == 1
    # Which step is refused depends on /dev/net/tun's mode (open, or creating the device).
    assert stderr in (
        "braid: tunnel braid0: no permission to open /dev/net/tun; run as root (CAP_NET_ADMIN)\n",
        "braid: tunnel braid0: not permitted to create TUN devices; run as root (CAP_NET_ADMIN)\n",
    )


def test_the_event_loop_is_uvloop_unless_the_environment_asks_for_asyncio(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asyncio

    import uvloop

    from braid.runtime.daemon import LOOP_ENV, loop_factory

    monkeypatch.delenv(LOOP_ENV, raising=False)
    loop = loop_factory()()
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()
    monkeypatch.setenv(LOOP_ENV, "asyncio")
    loop = loop_factory()()
    try:
        assert not isinstance(loop, uvloop.Loop)
        assert isinstance(loop, asyncio.AbstractEventLoop)
    finally:
        loop.close()
