"""Routing modes: what `braid up` adds around the tunnel, and `down` removes again.

    nat               remote portal: forwarding on; nftables masquerades the sites'
                      prefixes leaving the portal (table `inet braid_<tunnel>`).
    routed            local portal: clients on LAN `interface` using addresses routed
                      to them through the remote portal (dissertation fig. 4.4): policy
                      rules send their packets into the tunnel and packets to them out of
                      the LAN; proxy ARP on the LAN. Remote portal: forwarding on, proxy
                      ARP on `interface` if given (the addresses are in its subnet).
    single-interface  remote portal with one interface (fig. 4.7): packets to the
                      addresses in `prefixes` (typically its own public address, shared
                      with the client) go into the tunnel, except braid's own UDP port;
                      the `local` table moves after braid's rules.

Every change is recorded with its undo as it is made; `remove()` undoes them in reverse
order (ignoring what already vanished, e.g. routes of a deleted TUN), and a failing
`apply()` undoes what it did before raising `DriverError` (one line).
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from braid.io.base import DriverError

log = logging.getLogger("braid.runtime")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Priority of the first policy rule braid adds (before `main` at 32766).
RULE_PRIORITY = 1000
LOCAL_TABLE = 255
SYSCTL_ROOT = Path("/proc/sys")


def _family(net: Network) -> int:
    import socket

    return socket.AF_INET6 if net.version == 6 else socket.AF_INET


class Routing:
    """One routing mode set up around one tunnel; `apply()` then `remove()`."""

    def __init__(
        self,
        *,
        mode: str,
        role: str,
        tunnel: str,
        prefixes: Sequence[Network] = (),
        interface: str | None = None,
        table: int = 7100,
        listen_port: int | None = None,
        priority: int = RULE_PRIORITY,
    ) -> None:
        if mode not in ("none", "nat", "routed", "single-interface"):
            raise ValueError(f"mode: unknown routing mode {mode!r}")
        self.mode = mode
        self.role = role
        self.tunnel = tunnel
        self.prefixes = tuple(prefixes)
        self.interface = interface
        self.table = table
        self.listen_port = listen_port
        self.priority = priority
        self._undo: list[tuple[str, Callable[[], None]]] = []
        self._ipr: Any = None

    @classmethod
    def from_config(cls, config: Any) -> Routing:
        """The routing of a `PortalConfig` (its [routing] table)."""
        r = config.routing
        return cls(
            mode=r.mode,
            role=config.role,
            tunnel=config.tunnel.name,
            prefixes=r.prefixes,
            interface=r.interface,
            table=r.table,
            listen_port=config.listen.port if config.listen is not None else None,
        )

    def describe(self) -> str:
        """One line: the mode and what it covers."""
        if self.mode == "none":
            return "routing none"
        dev = f" on {self.interface}" if self.interface else ""
        return f"routing {self.mode} for {', '.join(str(p) for p in self.prefixes)}{dev}"

    # -- apply / remove ----------------------------------------------------------------

    def apply(self) -> None:
        """Set the mode up; on failure undo the partial setup and raise DriverError."""
        if self.mode == "none":
            return
        try:
            from pyroute2 import IPRoute

            self._ipr = IPRoute()
            if self.mode == "nat":
                self._nat()
            elif self.mode == "routed":
                self._routed()
            else:
                self._single_interface()
        except DriverError:
            self.remove()
            raise
        except OSError as exc:
            self.remove()
            raise DriverError(
                f"routing {self.mode}: {exc.strerror or exc}; check [routing] and that braid"
                " runs as root"
            ) from None
        except Exception as exc:
            self.remove()
            raise DriverError(f"routing {self.mode}: {type(exc).__name__}: {exc}") from None
        log.info("%s applied", self.describe())

    def remove(self) -> None:
        """Undo everything `apply` did, newest first. Idempotent; never raises."""
        while self._undo:
            what, undo = self._undo.pop()
            try:
                undo()
            except Exception as exc:  # gone already (TUN deleted), or changed by someone else
                log.debug("routing: undo %s: %s", what, exc)
        if self._ipr is not None:
            with contextlib.suppress(Exception):
                self._ipr.close()
            self._ipr = None

    # -- modes -------------------------------------------------------------------------

    def _forwarding(self) -> None:
        if any(p.version == 4 for p in self.prefixes) or not self.prefixes:
            self._sysctl("net/ipv4/ip_forward", "1")
        if any(p.version == 6 for p in self.prefixes):
            self._sysctl("net/ipv6/conf/all/forwarding", "1")

    def _nat(self) -> None:
        self._forwarding()
        v4 = ", ".join(str(p) for p in self.prefixes if p.version == 4)
        v6 = ", ".join(str(p) for p in self.prefixes if p.version == 6)
        out = f' oifname "{self.interface}"' if self.interface else ""
        rules = []
        if v4:
            rules.append(f'ip saddr {{ {v4} }} oifname != "{self.tunnel}"{out} masquerade')
        if v6:
            rules.append(f'ip6 saddr {{ {v6} }} oifname != "{self.tunnel}"{out} masquerade')
        self._nft_table(rules)

    def _nft_table(self, masquerade: list[str]) -> None:
        """braid's nftables table: site isolation, and masquerading in NAT mode."""
        nft = shutil.which("nft")
        if nft is None:
            raise DriverError(f"routing {self.mode}: nft not found; apt-get install -y nftables")
        table = "braid_" + "".join(c if c.isalnum() else "_" for c in self.tunnel)
        script = f"table inet {table} {{\n"
        if masquerade:
            script += (
                "  chain postrouting {\n"
                "    type nat hook postrouting priority srcnat; policy accept;\n"
                + "".join(f"    {rule}\n" for rule in masquerade)
                + "  }\n"
            )
        # Sites are isolated: nothing is forwarded from the tunnel back into it (from one
        # site's session to another's), whatever the portal's forwarding says.
        script += (
            "  chain forward {\n"
            "    type filter hook forward priority filter; policy accept;\n"
            f'    iifname "{self.tunnel}" oifname "{self.tunnel}" drop\n'
            "  }\n}\n"
        )
        self._nft(nft, f"delete table inet {table}\n", check=False)
        self._nft(nft, script)

        def delete() -> None:
            self._nft(nft, f"delete table inet {table}\n")

        self._undo.append((f"nft table {table}", delete))

    def _routed(self) -> None:
        self._forwarding()
        if self.role == "remote":
            if self.interface:
                self._sysctl(f"net/ipv4/conf/{self.interface}/proxy_arp", "1")
            self._nft_table([])
            return
        assert self.interface is not None
        lan = self._ifindex(self.interface)
        tun = self._ifindex(self.tunnel)
        self._sysctl(f"net/ipv4/conf/{self.interface}/proxy_arp", "1")
        to_table = self.table + 1
        for family in sorted({_family(p) for p in self.prefixes}):
            self._route(family, None, tun, self.table)  # default via the tunnel
        for prefix in self.prefixes:
            # Packets to the clients leave by the LAN; packets from them (arriving on
            # the LAN) go into the tunnel.
            self._route(_family(prefix), prefix, lan, to_table)
            self._rule(_family(prefix), dst=prefix, table=to_table, priority=self.priority)
            self._rule(
                _family(prefix),
                src=prefix,
                iifname=self.interface,
                table=self.table,
                priority=self.priority + 1,
            )

    def _single_interface(self) -> None:
        self._forwarding()
        self._nft_table([])
        assert self.interface is not None
        self._ifindex(self.interface)
        tun = self._ifindex(self.tunnel)
        self._sysctl(f"net/ipv4/conf/{self.interface}/proxy_arp", "1")
        # The client's packets come out of the tunnel with a source address that is
        # (or may be) local: accept them, and do not reverse-path filter the tunnel.
        self._sysctl(f"net/ipv4/conf/{self.tunnel}/accept_local", "1")
        self._sysctl(f"net/ipv4/conf/{self.tunnel}/rp_filter", "0")
        self._sysctl("net/ipv4/conf/all/rp_filter", "0")
        families = sorted({_family(p) for p in self.prefixes})
        p = self.priority
        for prefix in self.prefixes:
            self._route(_family(prefix), prefix, tun, self.table)
            if self.listen_port is not None:
                self._rule(
                    _family(prefix),
                    dst=prefix,
                    ip_proto=17,
                    dport_range=f"{self.listen_port}:{self.listen_port}",
                    table=LOCAL_TABLE,
                    priority=p,
                )
            self._rule(_family(prefix), dst=prefix, table=self.table, priority=p + 1)
        # Move the `local` table's lookup after braid's rules (it catches local
        # addresses first otherwise).
        for family in families:
            self._rule(family, table=LOCAL_TABLE, priority=p + 2)
            self._move_local_rule(family)

    # -- primitives (each records its undo) ----------------------------------------------

    def _ifindex(self, name: str) -> int:
        found = self._ipr.link_lookup(ifname=name)
        if not found:
            raise DriverError(
                f"routing {self.mode}: no interface {name!r}; check [routing].interface"
            )
        return int(found[0])

    def _sysctl(self, key: str, value: str) -> None:
        path = SYSCTL_ROOT / key
        try:
            old = path.read_text().strip()
        except OSError as exc:
            raise DriverError(f"routing {self.mode}: cannot read {key}: {exc.strerror}") from None
        if old == value:
            return
        path.write_text(value)

        def restore() -> None:
            path.write_text(old)

        self._undo.append((f"sysctl {key}", restore))

    def _route(self, family: int, dst: Network | None, oif: int, table: int) -> None:
        kwargs: dict[str, Any] = {"family": family, "oif": oif, "table": table}
        if dst is None:
            kwargs["dst"] = "default"
        else:
            kwargs["dst"] = str(dst)
        try:
            self._ipr.route("add", **kwargs)
        except Exception as exc:
            if getattr(exc, "code", None) != errno.EEXIST:
                raise
        self._undo.append((f"route {kwargs}", lambda: self._ipr.route("del", **kwargs)))

    def _rule(self, family: int, *, table: int, priority: int, **match: Any) -> None:
        kwargs: dict[str, Any] = {"family": family, "table": table, "priority": priority}
        for key in ("src", "dst"):
            net = match.pop(key, None)
            if net is not None:
                kwargs[key] = str(net.network_address)
                kwargs[f"{key}_len"] = net.prefixlen
        kwargs.update(match)
        with contextlib.suppress(Exception):
            self._ipr.rule("del", **kwargs)  # a leftover of a crashed run
        self._ipr.rule("add", **kwargs)
        self._undo.append((f"rule {kwargs}", lambda: self._ipr.rule("del", **kwargs)))

    def _move_local_rule(self, family: int) -> None:
        """Delete the `from all lookup local` rule at priority 0 (restored by remove)."""
        kwargs = {"family": family, "table": LOCAL_TABLE, "priority": 0}
        present = any(
            r.get("table") == LOCAL_TABLE and (r.get_attr("FRA_PRIORITY") or 0) == 0
            for r in self._ipr.get_rules(family=family)
        )
        if not present:
            return
        self._ipr.rule("del", **kwargs)
        self._undo.append(("local rule", lambda: self._ipr.rule("add", **kwargs)))

    @staticmethod
    def _nft(nft: str, script: str, *, check: bool = True) -> None:
        """Run an nft script; DriverError with nft's first line if it fails (when checked)."""
        done = subprocess.run(
            [nft, "-f", "-"], input=script, text=True, capture_output=True, check=False
        )
        if check and done.returncode != 0:
            message = (done.stderr.strip().splitlines() or ["failed"])[0]
            raise DriverError(f"routing nat: nft: {message}")
