"""Portal configuration: a TOML file -> validated, frozen dataclasses.

Every problem is a `ConfigError` whose text is ONE line,
`CONFIG:FIELD: what is wrong; what is expected`, e.g.
`site.toml: link[1].remote: "1.2.3.4" has no port; expected "HOST:PORT"`.
Unknown keys are errors too (with a "did you mean" when close to a known one).
Links are numbered from 0 in messages, as path ids are.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NoReturn

from braid.core.session import SessionConfig

Role = Literal["local", "remote"]
Interface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_LINKS = 16
MTU_MIN = 576
MTU_MAX = 9000
MTU_MIN_IPV6 = 1280
IFNAME_MAX = 15
DEFAULT_TUNNEL_NAME = "braid0"
DEFAULT_MTU = 1400
DEFAULT_LISTEN_ADDRESS = "0.0.0.0"
DEFAULT_PORT = 7100

_RATE_UNITS = {"bit": 1, "kbit": 10**3, "mbit": 10**6, "gbit": 10**9}
_RATE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*$", re.IGNORECASE)
_HOSTNAME_RE = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*\.?$",
    re.IGNORECASE,
)
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
_TOML_POS_RE = re.compile(r"^(.*?) \(at line (\d+), column (\d+)\)$")


class ConfigError(Exception):
    """An invalid configuration; `str()` is one line: `CONFIG:FIELD: problem; expected`."""

    def __init__(self, source: str, field: str, message: str) -> None:
        self.source = source
        self.field = field
        self.message = message
        super().__init__(f"{source}: {field}: {message}" if field else f"{source}: {message}")


@dataclass(frozen=True, slots=True)
class TunnelConfig:
    """The TUN device: name, addresses (CIDR), MTU and the prefixes routed into it."""

    name: str
    addresses: tuple[Interface, ...]
    mtu: int
    routes: tuple[Network, ...] = ()


@dataclass(frozen=True, slots=True)
class SessionSettings:
    """Per-session protocol settings (passed to the core as a `SessionConfig`)."""

    scheduler: str
    keepalive_interval: float
    dead_interval: float

    def to_session_config(self) -> SessionConfig:
        """The core's `SessionConfig` with these settings (core defaults for the rest)."""
        return SessionConfig(
            scheduler=self.scheduler,
            keepalive_interval=self.keepalive_interval,
            dead_interval=self.dead_interval,
        )


@dataclass(frozen=True, slots=True)
class ListenConfig:
    """Where the remote portal listens for its local portals."""

    address: str = DEFAULT_LISTEN_ADDRESS
    port: int = DEFAULT_PORT


@dataclass(frozen=True, slots=True)
class LinkConfig:
    """One WAN link of the local portal, i.e. one path of the session (path id = index)."""

    name: str
    remote_host: str
    remote_port: int
    interface: str | None = None
    source: str | None = None
    rate_bps: int | None = None
    metric: int = 0

    @property
    def remote(self) -> tuple[str, int]:
        """The remote portal endpoint as `(host, port)`."""
        return (self.remote_host, self.remote_port)

    @property
    def remote_text(self) -> str:
        """The remote endpoint as written in a config (`HOST:PORT`, `[V6]:PORT`)."""
        host = self.remote_host
        return f"[{host}]:{self.remote_port}" if ":" in host else f"{host}:{self.remote_port}"


@dataclass(frozen=True, slots=True)
class PortalConfig:
    """A whole, valid portal configuration."""

    role: Role
    tunnel: TunnelConfig
    session: SessionSettings
    listen: ListenConfig | None = None
    links: tuple[LinkConfig, ...] = ()
    source: str = field(default="<config>", compare=False)


# -- loading --------------------------------------------------------------------


def load_config(path: str | Path) -> PortalConfig:
    """Read and validate the TOML file at `path`; raise `ConfigError` (one line)."""
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(source, "", "no such file; expected the path of a TOML config") from None
    except IsADirectoryError:
        raise ConfigError(source, "", "is a directory; expected a TOML config file") from None
    except OSError as exc:
        raise ConfigError(source, "", f"cannot read: {exc.strerror}; check the path") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(source, "", "is not UTF-8 text; expected a TOML config file") from None
    return parse_config(text, source=source)


def parse_config(text: str, *, source: str = "<config>") -> PortalConfig:
    """Parse and validate TOML text; raise `ConfigError` (one line)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, *_toml_error(str(exc))) from None
    return _Validator(source).portal(data)


def _toml_error(text: str) -> tuple[str, str]:
    first = text.splitlines()[0] if text else "invalid TOML"
    match = _TOML_POS_RE.match(first)
    if match:
        what, line, column = match.groups()
        return f"line {line}, column {column}", f"invalid TOML: {what}; expected valid TOML syntax"
    return "", f"invalid TOML: {first}; expected valid TOML syntax"


# -- rendering helpers -------------------------------------------------------------


def _show(value: object) -> str:
    """A value as the user wrote it in TOML, for messages."""
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return str(value)


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return "a date/time"


def parse_rate(text: str) -> int | None:
    """`"20mbit"` -> 20_000_000 bits/s (units bit, kbit, mbit, gbit); None if malformed."""
    match = _RATE_RE.match(text)
    if not match:
        return None
    number, unit = match.groups()
    scale = _RATE_UNITS.get(unit.lower())
    if scale is None:
        return None
    return round(float(number) * scale)


def format_rate(bps: int) -> str:
    """20_000_000 -> "20mbit" (the shortest exact form in kbit/mbit/gbit)."""
    for unit, scale in (("gbit", 10**9), ("mbit", 10**6), ("kbit", 10**3)):
        if bps >= scale:
            value = bps / scale
            text = f"{value:.3f}".rstrip("0").rstrip(".")
            return f"{text}{unit}"
    return f"{bps}bit"


# -- validation ----------------------------------------------------------------------


class _Table:
    """A TOML table being validated: tracks the keys read, reports unknown ones."""

    def __init__(self, validator: _Validator, path: str, data: dict[str, Any]) -> None:
        self.v = validator
        self.path = path
        self.data = data
        self.known: list[str] = []

    def field(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def get(self, key: str) -> Any:
        if key not in self.known:
            self.known.append(key)
        return self.data.get(key)

    def has(self, key: str) -> bool:
        return key in self.data

    def finish(self) -> None:
        for key in self.data:
            if key not in self.known:
                expected = "expected one of " + ", ".join(self.known)
                close = difflib.get_close_matches(key, self.known, n=1)
                hint = f'did you mean "{close[0]}"? ' if close else ""
                self.v.fail(self.field(key), f"unknown key; {hint}{expected}")


class _Validator:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, field: str, message: str) -> NoReturn:
        raise ConfigError(self.source, field, message)

    # -- typed getters --

    def string(self, t: _Table, key: str, *, default: str | None, expected: str) -> str | None:
        value = t.get(key)
        if value is None:
            return default
        if not isinstance(value, str):
            self.fail(t.field(key), f"{_show(value)} is {_kind(value)}; expected {expected}")
        return value

    def integer(
        self, t: _Table, key: str, *, default: int | None, low: int, high: int, expected: str
    ) -> int | None:
        value = t.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(t.field(key), f"{_show(value)} is {_kind(value)}; expected {expected}")
        if not low <= value <= high:
            self.fail(t.field(key), f"{value} is out of range; expected {expected}")
        return value

    def number(
        self, t: _Table, key: str, *, default: float, low: float, high: float, expected: str
    ) -> float:
        value = t.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(t.field(key), f"{_show(value)} is {_kind(value)}; expected {expected}")
        if not math.isfinite(value) or not low <= value <= high:
            self.fail(t.field(key), f"{value} is out of range; expected {expected}")
        return float(value)

    def table(self, parent: _Table, key: str, *, required: bool, why: str = "") -> _Table | None:
        value = parent.get(key)
        field = parent.field(key)
        if value is None:
            if required:
                self.fail(field, f"missing; {why}")
            return None
        if not isinstance(value, dict):
            self.fail(field, f"{_show(value)} is {_kind(value)}; expected a [{field}] table")
        return _Table(self, field, value)

    # -- sections --

    def portal(self, data: dict[str, Any]) -> PortalConfig:
        top = _Table(self, "", data)
        top.known.extend(("role", "tunnel", "session", "listen", "link"))
        role_value = top.get("role")
        if role_value is None:
            self.fail("role", 'missing; expected role = "local" or role = "remote"')
        if role_value not in ("local", "remote"):
            self.fail("role", f'{_show(role_value)} is not a role; expected "local" or "remote"')
        role: Role = "local" if role_value == "local" else "remote"

        tunnel_table = self.table(
            top, "tunnel", required=True, why='expected a [tunnel] table with address = "CIDR"'
        )
        assert tunnel_table is not None
        tunnel = self.tunnel(tunnel_table)
        session = self.session(self.table(top, "session", required=False))

        listen: ListenConfig | None = None
        if role == "remote":
            listen_table = self.table(
                top,
                "listen",
                required=True,
                why="expected a [listen] table with address and port (the remote portal listens)",
            )
            assert listen_table is not None
            listen = self.listen(listen_table)
        elif top.has("listen"):
            top.get("listen")
            self.fail(
                "listen",
                'not allowed for role "local"; expected [listen] only in the remote portal config',
            )

        links: tuple[LinkConfig, ...] = ()
        if role == "local":
            links = self.links(top)
        elif top.has("link"):
            top.get("link")
            self.fail(
                "link",
                'not allowed for role "remote"; expected [[link]] tables only in the local portal config',
            )
        top.finish()
        return PortalConfig(
            role=role,
            tunnel=tunnel,
            session=session,
            listen=listen,
            links=links,
            source=self.source,
        )

    def tunnel(self, t: _Table) -> TunnelConfig:
        name = self.string(
            t, "name", default=DEFAULT_TUNNEL_NAME, expected="an interface name of 1..15 characters"
        )
        assert name is not None
        self.check_ifname(t.field("name"), name)

        raw = t.get("address")
        field = t.field("address")
        example = 'expected a CIDR like "10.99.0.1/30" (or a list of them)'
        if raw is None:
            self.fail(field, f"missing; {example}")
        items: list[Any] = raw if isinstance(raw, list) else [raw]
        if not items:
            self.fail(field, f"empty list; {example}")
        addresses: list[Interface] = []
        for i, item in enumerate(items):
            item_field = f"{field}[{i}]" if isinstance(raw, list) else field
            addresses.append(self.cidr(item_field, item))
        seen: set[Interface] = set()
        for i, addr in enumerate(addresses):
            if addr in seen:
                self.fail(f"{field}[{i}]", f'"{addr}" is listed twice; expected distinct addresses')
            seen.add(addr)

        has_v6 = any(a.version == 6 for a in addresses)
        mtu_low = MTU_MIN_IPV6 if has_v6 else MTU_MIN
        mtu_value = t.get("mtu")
        mtu_field = t.field("mtu")
        if mtu_value is None:
            mtu = DEFAULT_MTU
        elif isinstance(mtu_value, bool) or not isinstance(mtu_value, int):
            self.fail(
                mtu_field,
                f"{_show(mtu_value)} is {_kind(mtu_value)}; expected an integer {mtu_low}..{MTU_MAX}",
            )
        elif has_v6 and MTU_MIN <= mtu_value < MTU_MIN_IPV6:
            self.fail(
                mtu_field,
                f"{mtu_value} is below {MTU_MIN_IPV6}, the IPv6 minimum (the tunnel has an IPv6"
                f" address); expected {MTU_MIN_IPV6}..{MTU_MAX}",
            )
        elif not mtu_low <= mtu_value <= MTU_MAX:
            self.fail(
                mtu_field, f"{mtu_value} is out of range; expected an integer {mtu_low}..{MTU_MAX}"
            )
        else:
            mtu = mtu_value

        routes: list[Network] = []
        raw_routes = t.get("routes")
        routes_field = t.field("routes")
        if raw_routes is not None:
            if not isinstance(raw_routes, list):
                self.fail(
                    routes_field,
                    f'{_show(raw_routes)} is {_kind(raw_routes)}; expected a list like ["10.2.0.0/24"]',
                )
            for i, item in enumerate(raw_routes):
                net = self.prefix(f"{routes_field}[{i}]", item)
                if net in routes:
                    self.fail(
                        f"{routes_field}[{i}]",
                        f'"{net}" is listed twice; expected distinct prefixes',
                    )
                routes.append(net)
        t.finish()
        return TunnelConfig(name=name, addresses=tuple(addresses), mtu=mtu, routes=tuple(routes))

    def session(self, t: _Table | None) -> SessionSettings:
        defaults = SessionConfig()
        if t is None:
            return SessionSettings(
                scheduler=defaults.scheduler,
                keepalive_interval=defaults.keepalive_interval,
                dead_interval=defaults.dead_interval,
            )
        names = known_schedulers()
        expected_sched = "one of " + ", ".join(f'"{n}"' for n in names)
        scheduler = self.string(t, "scheduler", default=defaults.scheduler, expected=expected_sched)
        assert scheduler is not None
        if scheduler not in names:
            self.fail(
                t.field("scheduler"), f"{_show(scheduler)} is unknown; expected {expected_sched}"
            )
        keepalive = self.number(
            t,
            "keepalive_interval",
            default=defaults.keepalive_interval,
            low=0.01,
            high=60.0,
            expected="seconds, 0.01..60",
        )
        dead = self.number(
            t,
            "dead_interval",
            default=defaults.dead_interval,
            low=0.02,
            high=600.0,
            expected="seconds, 0.02..600",
        )
        if dead <= keepalive:
            self.fail(
                t.field("dead_interval"),
                f"{dead:g} is not above keepalive_interval ({keepalive:g}); expected a longer"
                " interval, e.g. 4 x keepalive_interval",
            )
        t.finish()
        return SessionSettings(
            scheduler=scheduler, keepalive_interval=keepalive, dead_interval=dead
        )

    def listen(self, t: _Table) -> ListenConfig:
        address = self.string(
            t, "address", default=DEFAULT_LISTEN_ADDRESS, expected='an IP address like "0.0.0.0"'
        )
        assert address is not None
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            self.fail(
                t.field("address"),
                f'{_show(address)} is not an IP address; expected e.g. "0.0.0.0" or "::"',
            )
        if ip.is_multicast:
            self.fail(
                t.field("address"), f"{_show(address)} is multicast; expected a unicast address"
            )
        port = self.integer(
            t, "port", default=DEFAULT_PORT, low=1, high=65535, expected="a UDP port 1..65535"
        )
        assert port is not None
        t.finish()
        return ListenConfig(address=address, port=port)

    def links(self, top: _Table) -> tuple[LinkConfig, ...]:
        raw = top.get("link")
        if raw is None:
            self.fail(
                "link",
                "missing; expected at least one [[link]] table (name, interface or source, remote)",
            )
        if not isinstance(raw, list):
            self.fail("link", f"{_show(raw)} is {_kind(raw)}; expected [[link]] tables")
        if not raw:
            self.fail("link", "empty; expected at least one [[link]] table")
        if len(raw) > MAX_LINKS:
            self.fail("link", f"{len(raw)} links; expected at most {MAX_LINKS}")
        links: list[LinkConfig] = []
        for i, item in enumerate(raw):
            field = f"link[{i}]"
            if not isinstance(item, dict):
                self.fail(field, f"{_show(item)} is {_kind(item)}; expected a [[link]] table")
            links.append(self.link(_Table(self, field, item)))
        names: dict[str, int] = {}
        pins: dict[tuple[str | None, str | None, tuple[str, int]], int] = {}
        for i, link in enumerate(links):
            if link.name in names:
                self.fail(
                    f"link[{i}].name",
                    f'"{link.name}" is already the name of link[{names[link.name]}];'
                    " expected unique link names",
                )
            names[link.name] = i
            pin = (link.interface, link.source, link.remote)
            if pin in pins:
                self.fail(
                    f"link[{i}]",
                    f"same interface, source and remote as link[{pins[pin]}]; expected each link"
                    " pinned to a different interface or source",
                )
            pins[pin] = i
        return tuple(links)

    def link(self, t: _Table) -> LinkConfig:
        name = self.string(t, "name", default=None, expected='a link name like "dsl"')
        if name is None:
            self.fail(t.field("name"), 'missing; expected a unique link name like "dsl"')
        if not _NAME_RE.match(name):
            self.fail(
                t.field("name"),
                f"{_show(name)} is not a valid name; expected 1..32 letters, digits, '_', '.', '-'",
            )

        interface = self.string(t, "interface", default=None, expected='an interface like "eth1"')
        if interface is not None:
            self.check_ifname(t.field("interface"), interface)

        source = self.string(t, "source", default=None, expected='a local IP like "192.0.2.2"')
        source_ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
        if source is not None:
            try:
                source_ip = ipaddress.ip_address(source)
            except ValueError:
                self.fail(
                    t.field("source"),
                    f"{_show(source)} is not an IP address; expected a local address like"
                    ' "192.0.2.2"',
                )
            if source_ip.is_unspecified or source_ip.is_multicast:
                self.fail(
                    t.field("source"),
                    f"{_show(source)} is not a unicast address; expected a local address of the link",
                )
        if interface is None and source is None:
            self.fail(
                t.path,
                'needs interface or source (or both) to pin the link; expected e.g. interface = "eth1"',
            )

        remote_raw = self.string(
            t, "remote", default=None, expected='"HOST:PORT" like "198.51.100.1:7100"'
        )
        if remote_raw is None:
            self.fail(t.field("remote"), 'missing; expected "HOST:PORT" like "198.51.100.1:7100"')
        host, port = self.endpoint(t.field("remote"), remote_raw)
        if source_ip is not None:
            try:
                remote_ip = ipaddress.ip_address(host)
            except ValueError:
                remote_ip = None
            if remote_ip is not None and remote_ip.version != source_ip.version:
                self.fail(
                    t.field("remote"),
                    f"{_show(remote_raw)} is IPv{remote_ip.version} but source is"
                    f" IPv{source_ip.version}; expected both of the same family",
                )

        rate_bps: int | None = None
        rate_raw = t.get("rate")
        if rate_raw is not None:
            rate_field = t.field("rate")
            expected = 'a rate like "20mbit" (units kbit, mbit, gbit)'
            if isinstance(rate_raw, bool) or not isinstance(rate_raw, str):
                self.fail(
                    rate_field, f"{_show(rate_raw)} is {_kind(rate_raw)}; expected {expected}"
                )
            rate_bps = parse_rate(rate_raw)
            if rate_bps is None:
                self.fail(rate_field, f"{_show(rate_raw)} is not a rate; expected {expected}")
            if rate_bps <= 0:
                self.fail(rate_field, f"{_show(rate_raw)} is zero; expected a positive rate")

        metric = self.integer(
            t, "metric", default=0, low=0, high=255, expected="an integer 0..255 (lower preferred)"
        )
        assert metric is not None
        t.finish()
        return LinkConfig(
            name=name,
            remote_host=host,
            remote_port=port,
            interface=interface,
            source=source,
            rate_bps=rate_bps,
            metric=metric,
        )

    # -- value checks --

    def check_ifname(self, field: str, name: str) -> None:
        if not name or len(name.encode()) > IFNAME_MAX:
            self.fail(field, f"{_show(name)} has {len(name)} characters; expected 1..15")
        if name in (".", "..") or any(c in name for c in "/: \t\n") or not name.isprintable():
            self.fail(
                field,
                f"{_show(name)} is not a valid interface name; expected no '/', ':' or spaces",
            )

    def cidr(self, field: str, value: object) -> Interface:
        example = 'expected a CIDR like "10.99.0.1/30" or "fd00::1/64"'
        if not isinstance(value, str):
            self.fail(field, f"{_show(value)} is {_kind(value)}; {example}")
        if "/" not in value:
            self.fail(field, f"{_show(value)} has no prefix length; {example}")
        try:
            iface = ipaddress.ip_interface(value)
        except ValueError:
            self.fail(field, f"{_show(value)} is not an address/prefix; {example}")
        if iface.ip.is_unspecified or iface.ip.is_multicast or iface.ip.is_loopback:
            self.fail(field, f"{_show(value)} is not a unicast host address; {example}")
        return iface

    def prefix(self, field: str, value: object) -> Network:
        example = 'expected a prefix like "10.2.0.0/24"'
        if not isinstance(value, str):
            self.fail(field, f"{_show(value)} is {_kind(value)}; {example}")
        try:
            return ipaddress.ip_network(value)
        except ValueError:
            pass
        try:
            iface = ipaddress.ip_interface(value)
        except ValueError:
            self.fail(field, f"{_show(value)} is not a prefix; {example}")
        self.fail(field, f'{_show(value)} has host bits set; expected the prefix "{iface.network}"')

    def endpoint(self, field: str, value: str) -> tuple[str, int]:
        expected = 'expected "HOST:PORT" like "198.51.100.1:7100" or "[2001:db8::1]:7100"'
        text = value.strip()
        if text.startswith("["):
            match = re.fullmatch(r"\[([^\]]+)\](?::(.*))?", text)
            if not match:
                self.fail(field, f"{_show(value)} is malformed; {expected}")
            host, port_text = match.group(1), match.group(2)
            try:
                ip = ipaddress.ip_address(host)
            except ValueError:
                self.fail(field, f"{_show(value)}: {host!r} is not an IPv6 address; {expected}")
            if ip.version != 6:
                self.fail(field, f"{_show(value)}: brackets are for IPv6 only; {expected}")
        else:
            if text.count(":") > 1:
                try:
                    ipaddress.IPv6Address(text)
                except ValueError:
                    self.fail(field, f"{_show(value)} is malformed; {expected}")
                self.fail(
                    field,
                    f'{_show(value)} has no port; expected "[{text}]:PORT" (IPv6 in brackets)',
                )
            host, sep, port_text = text.partition(":")
            if not sep:
                self.fail(field, f'{_show(value)} has no port; expected "HOST:PORT"')
            if not host:
                self.fail(field, f"{_show(value)} has no host; {expected}")
        if port_text is None or port_text == "":
            self.fail(field, f'{_show(value)} has no port; expected "HOST:PORT"')
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            self.fail(field, f"{_show(value)}: port {port_text!r} is invalid; expected 1..65535")
        try:
            ip_host = ipaddress.ip_address(host)
        except ValueError:
            if not _HOSTNAME_RE.match(host):
                self.fail(field, f"{_show(value)}: {host!r} is not a host name or IP; {expected}")
        else:
            if ip_host.is_unspecified or ip_host.is_multicast:
                self.fail(
                    field, f"{_show(value)} is not a unicast address; expected the remote portal's"
                )
        return host, int(port_text)


def known_schedulers() -> tuple[str, ...]:
    """The scheduler names the core registry offers."""
    from braid.core.scheduler import SCHEDULERS

    return tuple(SCHEDULERS)


def describe(config: PortalConfig) -> Iterator[str]:
    """Short human lines summarising a valid config (for `braid check`)."""
    t = config.tunnel
    addresses = ", ".join(str(a) for a in t.addresses)
    yield f"role {config.role}; tunnel {t.name} {addresses} mtu {t.mtu}"
    if t.routes:
        yield "routes " + ", ".join(str(r) for r in t.routes)
    s = config.session
    yield (
        f"session scheduler {s.scheduler}, keepalive {s.keepalive_interval:g}s,"
        f" dead after {s.dead_interval:g}s"
    )
    if config.listen is not None:
        la = config.listen.address
        yield f"listen {'[' + la + ']' if ':' in la else la}:{config.listen.port}/udp"
    for i, link in enumerate(config.links):
        pin = " ".join(
            p
            for p in (
                link.interface and f"dev {link.interface}",
                link.source and f"src {link.source}",
            )
            if p
        )
        extras = ""
        if link.rate_bps:
            extras += f" rate {format_rate(link.rate_bps)}"
        if link.metric:
            extras += f" metric {link.metric}"
        yield f"link {i} {link.name}: {pin} -> {link.remote_text}{extras}"
