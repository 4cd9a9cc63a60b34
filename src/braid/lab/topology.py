"""The lab topology: five network namespaces joined by veth pairs, built and torn down as one.

```
 client ──lan── local portal ══ wanK ── kKa [emulator] kKb ── wanK ══ remote portal ──lan── server
 10.1.0.2      10.1.0.1                                                10.2.0.1          10.2.0.2
               10.100.K.2   (link K: 10.100.K.0/24, one per link)   10.100.K.1
```

Each link is an L2 path through the emulator namespace: the relay (``relay.py``) moves
frames between ``kKa`` and ``kKb``; tc and nftables on those veths shape rate and loss.

Invariants:
- Every name carries the run's tag (``blab-<tag>-<role>``); interfaces are created directly
  inside their namespaces, so two labs never collide and names stay short (<= 15 chars).
- Everything built is removed on exit, exception or Ctrl-C (context manager), and processes
  spawned through ``spawn`` are stopped before their namespace goes.
- Plain routing between client and server over one link is switched with ``route_via``;
  ``route_via(None)`` leaves the LANs routed by nothing (the tunnel installs its own routes).
- MPTCP needs no switching: the client's extra addresses 10.1.0.(10+K) are policy-routed over
  link K at both portals, and are used only by MPTCP subflows.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from braid.lab.netns import (
    PREFIX,
    LabError,
    add_netns,
    del_netns,
    new_tag,
    ns_cmd,
    run,
    sysctl,
    workdir,
)

MAX_LINKS = 8
CLIENT_IP = "10.1.0.2"
CLIENT_LAN = "10.1.0.0/24"
LOCAL_LAN_IP = "10.1.0.1"
SERVER_IP = "10.2.0.2"
SERVER_LAN = "10.2.0.0/24"
REMOTE_LAN_IP = "10.2.0.1"
# IPv6 (``Topology(..., ipv6=True)``): the same plan in fd00::/16.
CLIENT_IP6 = "fd00:1::2"
CLIENT_LAN6 = "fd00:1::/64"
LOCAL_LAN_IP6 = "fd00:1::1"
SERVER_IP6 = "fd00:2::2"
SERVER_LAN6 = "fd00:2::/64"
REMOTE_LAN_IP6 = "fd00:2::1"
OFFLOADS_OFF = ["tx", "off", "tso", "off", "gso", "off", "gro", "off", "sg", "off"]


@dataclass(frozen=True)
class LinkNames:
    """Names and addresses of link K."""

    index: int

    @property
    def local_if(self) -> str:
        """The local portal's interface of this link."""
        return f"wan{self.index}"

    @property
    def remote_if(self) -> str:
        """The remote portal's interface of this link."""
        return f"wan{self.index}"

    @property
    def emu_local(self) -> str:
        """The emulator's veth facing the local portal (frames going up enter here)."""
        return f"k{self.index}a"

    @property
    def emu_remote(self) -> str:
        """The emulator's veth facing the remote portal (frames going down enter here)."""
        return f"k{self.index}b"

    @property
    def local_ip(self) -> str:
        """The local portal's address on this link."""
        return f"10.100.{self.index}.2"

    @property
    def remote_ip(self) -> str:
        """The remote portal's address on this link."""
        return f"10.100.{self.index}.1"

    @property
    def local_ip6(self) -> str:
        """The local portal's IPv6 address on this link (``ipv6=True`` labs)."""
        return f"fd00:100:{self.index}::2"

    @property
    def remote_ip6(self) -> str:
        """The remote portal's IPv6 address on this link (``ipv6=True`` labs)."""
        return f"fd00:100:{self.index}::1"

    @property
    def mptcp_client_ip(self) -> str:
        """The client address whose MPTCP subflow is routed over this link."""
        return f"10.1.0.{10 + self.index}"


class Topology:
    """Client, local portal, emulator, remote portal and server namespaces with N links."""

    def __init__(self, links: int, *, tag: str | None = None, ipv6: bool = False) -> None:
        if not 1 <= links <= MAX_LINKS:
            raise LabError(f"a lab has 1 to {MAX_LINKS} links, not {links}")
        self.tag = tag or new_tag()
        self.links = [LinkNames(k) for k in range(1, links + 1)]
        self.client = f"{PREFIX}{self.tag}-cl"
        self.local = f"{PREFIX}{self.tag}-lp"
        self.emulator = f"{PREFIX}{self.tag}-em"
        self.remote = f"{PREFIX}{self.tag}-rp"
        self.server = f"{PREFIX}{self.tag}-sv"
        self.workdir = workdir(self.tag)
        self._namespaces: list[str] = []
        self._processes: list[subprocess.Popen[Any]] = []
        self._route: int | None = None
        self._v6off: dict[str, dict[str, str]] = {}
        self.ipv6 = ipv6
        """IPv6 addresses on the LANs and links too (and IPv6 enabled on them)."""

    @property
    def namespaces(self) -> list[str]:
        """All five namespace names, client first."""
        return [self.client, self.local, self.emulator, self.remote, self.server]

    def __enter__(self) -> Topology:
        try:
            self.build()
        except BaseException:
            self.destroy()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.destroy()

    # -- building ---------------------------------------------------------------------------

    def build(self) -> None:
        """Create namespaces, veths, addresses, forwarding and the MPTCP policy routes."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "owner.pid").write_text(f"{os.getpid()}\n")
        for ns in self.namespaces:
            add_netns(ns)
            self._namespaces.append(ns)
        for ns in (self.local, self.remote):
            sysctl(
                ns,
                {
                    "net.ipv4.ip_forward": "1",
                    "net.ipv4.conf.all.rp_filter": "0",
                    "net.ipv4.conf.default.rp_filter": "0",
                },
            )
        for ns in (self.client, self.server):
            # Every run starts from the same TCP state: by default the kernel keeps a
            # closed connection's ssthresh, cwnd and RTT per destination and starts the
            # next connection to the same address from them. One link's run (ssthresh
            # of a 10 Mbit/s link) then made the next series' flow leave slow start far
            # below the aggregate (four links: braid 61.7 Mbit/s after the links' runs,
            # 82.6 with this setting).
            sysctl(ns, {"net.ipv4.tcp_no_metrics_save": "1"})
        sysctl(
            self.emulator,
            {"net.ipv6.conf.all.disable_ipv6": "1", "net.ipv6.conf.default.disable_ipv6": "1"},
        )
        # LANs.
        self._veth(self.client, "eth0", self.local, "lan0")
        self._veth(self.server, "eth0", self.remote, "lan0")
        self._addr(self.client, "eth0", f"{CLIENT_IP}/24")
        self._addr(self.local, "lan0", f"{LOCAL_LAN_IP}/24")
        self._addr(self.server, "eth0", f"{SERVER_IP}/24")
        self._addr(self.remote, "lan0", f"{REMOTE_LAN_IP}/24")
        # Links.
        for link in self.links:
            self._veth(self.local, link.local_if, self.emulator, link.emu_local)
            self._veth(self.remote, link.remote_if, self.emulator, link.emu_remote)
            self._addr(self.local, link.local_if, f"{link.local_ip}/24")
            self._addr(self.remote, link.remote_if, f"{link.remote_ip}/24")
            for ns, dev in (
                (self.local, link.local_if),
                (self.emulator, link.emu_local),
                (self.emulator, link.emu_remote),
                (self.remote, link.remote_if),
            ):
                run(ns_cmd(ns, ["ethtool", "-K", dev, *OFFLOADS_OFF]))
        if not self.ipv6:
            for ns, settings in self._v6off.items():
                sysctl(ns, settings)
        for ns in self.namespaces:
            for dev in self._devices(ns):
                run(["ip", "-n", ns, "link", "set", dev, "up"])
        run(["ip", "-n", self.client, "route", "add", "default", "via", LOCAL_LAN_IP])
        run(["ip", "-n", self.server, "route", "add", "default", "via", REMOTE_LAN_IP])
        if self.ipv6:
            self._build_ipv6()
        self._build_mptcp()

    def _build_ipv6(self) -> None:
        """IPv6 on the LANs and links (no DAD, so addresses work at once), forwarding."""
        for ns in (self.local, self.remote):
            sysctl(ns, {"net.ipv6.conf.all.forwarding": "1"})
        plan = [
            (self.client, "eth0", f"{CLIENT_IP6}/64"),
            (self.local, "lan0", f"{LOCAL_LAN_IP6}/64"),
            (self.server, "eth0", f"{SERVER_IP6}/64"),
            (self.remote, "lan0", f"{REMOTE_LAN_IP6}/64"),
        ]
        for link in self.links:
            plan.append((self.local, link.local_if, f"{link.local_ip6}/64"))
            plan.append((self.remote, link.remote_if, f"{link.remote_ip6}/64"))
        for ns, dev, cidr in plan:
            run(["ip", "-n", ns, "-6", "addr", "add", cidr, "dev", dev, "nodad"])
        run(["ip", "-n", self.client, "-6", "route", "add", "default", "via", LOCAL_LAN_IP6])
        run(["ip", "-n", self.server, "-6", "route", "add", "default", "via", REMOTE_LAN_IP6])

    def _devices(self, ns: str) -> list[str]:
        if ns in (self.client, self.server):
            return ["eth0"]
        if ns == self.emulator:
            return [name for link in self.links for name in (link.emu_local, link.emu_remote)]
        return ["lan0", *(f"wan{link.index}" for link in self.links)]

    def _veth(self, ns_a: str, name_a: str, ns_b: str, name_b: str) -> None:
        run(
            [
                "ip",
                "link",
                "add",
                name_a,
                "netns",
                ns_a,
                "type",
                "veth",
                "peer",
                "name",
                name_b,
                "netns",
                ns_b,
            ]
        )
        for ns, name in ((ns_a, name_a), (ns_b, name_b)):
            if ns != self.emulator:
                self._v6off.setdefault(ns, {})[f"net.ipv6.conf.{name}.disable_ipv6"] = "1"

    def _addr(self, ns: str, dev: str, cidr: str) -> None:
        run(["ip", "-n", ns, "addr", "add", cidr, "dev", dev])

    def _build_mptcp(self) -> None:
        """Client subflow endpoints, one per extra link, policy-routed over that link."""
        for ns in (self.client, self.server):
            limit = str(MAX_LINKS)
            run(
                [
                    "ip",
                    "-n",
                    ns,
                    "mptcp",
                    "limits",
                    "set",
                    "subflow",
                    limit,
                    "add_addr_accepted",
                    limit,
                ]
            )
        for link in self.links[1:]:
            table = str(100 + link.index)
            run(
                [
                    "ip",
                    "-n",
                    self.client,
                    "addr",
                    "add",
                    f"{link.mptcp_client_ip}/24",
                    "dev",
                    "eth0",
                ]
            )
            run(
                [
                    "ip",
                    "-n",
                    self.client,
                    "mptcp",
                    "endpoint",
                    "add",
                    link.mptcp_client_ip,
                    "dev",
                    "eth0",
                    "subflow",
                ]
            )
            run(
                [
                    "ip",
                    "-n",
                    self.local,
                    "rule",
                    "add",
                    "from",
                    link.mptcp_client_ip,
                    "table",
                    table,
                ]
            )
            run(
                [
                    "ip",
                    "-n",
                    self.local,
                    "route",
                    "replace",
                    SERVER_LAN,
                    "via",
                    link.remote_ip,
                    "dev",
                    link.local_if,
                    "table",
                    table,
                ]
            )
            run(
                [
                    "ip",
                    "-n",
                    self.remote,
                    "route",
                    "replace",
                    f"{link.mptcp_client_ip}/32",
                    "via",
                    link.local_ip,
                    "dev",
                    link.remote_if,
                ]
            )

    # -- routing ----------------------------------------------------------------------------

    def route_via(self, link: int | None) -> None:
        """Route client <-> server over link ``link`` alone, or over nothing (None)."""
        if self._route is not None:
            run(["ip", "-n", self.local, "route", "del", SERVER_LAN], check=False)
            run(["ip", "-n", self.remote, "route", "del", CLIENT_LAN], check=False)
            self._route = None
        if link is None:
            return
        names = self.links[link - 1]
        run(
            [
                "ip",
                "-n",
                self.local,
                "route",
                "replace",
                SERVER_LAN,
                "via",
                names.remote_ip,
                "dev",
                names.local_if,
            ]
        )
        run(
            [
                "ip",
                "-n",
                self.remote,
                "route",
                "replace",
                CLIENT_LAN,
                "via",
                names.local_ip,
                "dev",
                names.remote_if,
            ]
        )
        self._route = link

    # -- processes --------------------------------------------------------------------------

    def spawn(
        self,
        ns: str,
        argv: list[str],
        *,
        stdin: int | IO[Any] | None = subprocess.DEVNULL,
        stdout: int | IO[Any] | None = subprocess.PIPE,
        stderr: int | IO[Any] | None = subprocess.PIPE,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[str]:
        """Start ``argv`` inside namespace ``ns``; it is stopped when the lab is destroyed."""
        proc = subprocess.Popen(
            ns_cmd(ns, argv),
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            text=True,
            start_new_session=True,
            env=env,
        )
        self._processes.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[Any], *, grace: float = 3.0) -> None:
        """Stop a spawned process: SIGTERM, then SIGKILL after ``grace`` seconds."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        if proc in self._processes:
            self._processes.remove(proc)

    # -- teardown ---------------------------------------------------------------------------

    def destroy(self) -> None:
        """Stop spawned processes, delete the namespaces (and so every veth), remove files."""
        for proc in list(self._processes):
            with contextlib.suppress(Exception):
                self.stop(proc, grace=2.0)
        for ns in reversed(self._namespaces):
            with contextlib.suppress(Exception):
                del_netns(ns)
        self._namespaces.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def file(self, name: str) -> Path:
        """Return a path in this lab's work folder."""
        return self.workdir / name
