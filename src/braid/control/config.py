"""Portal configuration: a TOML file -> validated, frozen dataclasses.

Every problem is a `ConfigError` whose text is ONE line,
`CONFIG:FIELD: what is wrong; what is expected`, e.g.
`site.toml: link[1].remote: "1.2.3.4" has no port; expected "HOST:PORT"`.
Unknown keys are errors too (with a "did you mean" when close to a known one).
Links are numbered from 0 in messages, as path ids are.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import math
import os
import re
import stat
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NoReturn

from braid.core.classify import TrafficClass, mss_for_mtu
from braid.core.congestion import CONGESTION_CONTROLS
from braid.core.keys import REKEY_AFTER_TIME, decode_key, public_key
from braid.core.predictor import LossModel, load_model
from braid.core.secure import PeerSpec, SecureConfig
from braid.core.session import EQUALIZE_MODES, FEC_MODES, NACK_MODES, SessionConfig

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
DEFAULT_API_ADDRESS = "127.0.0.1"
DEFAULT_API_PORT = 7180
API_TOKEN_MIN = 16
ROUTING_MODES = ("none", "nat", "routed", "single-interface")
DEFAULT_ROUTING_TABLE = 7100

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
    # -- issue 5 (aggregation): congestion control, queue control, bandwidth on demand,
    # traffic classes ([[class]] tables). Defaults are the core's.
    congestion_control: str = "bbr"
    queue_limit: float = 0.1
    early_drop: float = 0.7
    early_drop_interval: float = 0.2
    delay_cutoff: float = 0.2
    delay_floor: float = 0.0
    equalize: str = "bulk"
    equalize_remember: float = 600.0
    compress_headers: bool = True
    ack_filter: bool = True
    clamp_mss: bool = True
    """TCP SYNs entering the tunnel get an MSS that fits the TUN MTU (the core's
    `clamp_mss` = tunnel MTU - 40, set by `braid.control.up`)."""
    bod_upper: float = 0.8
    bod_lower: float = 0.5
    classes: tuple[TrafficClass, ...] = ()
    # -- end issue 5
    silence_timeout_min: float = 0.3
    return_holddown: float = 0.2
    sparse_priority: bool = True
    fair_queue: bool = False
    probe_rates: bool = True
    # -- issue 7 (loss recovery)
    nack: str = "auto"
    loss_predictor: bool = True
    loss_model: LossModel | None = None
    gap_trace: str | None = None
    """A file the portal appends its egress gap samples to (for `braid train`)."""
    fec: str = "off"
    split_below: int = 0

    def to_session_config(self) -> SessionConfig:
        """The core's `SessionConfig` with these settings (core defaults for the rest)."""
        return SessionConfig(
            scheduler=self.scheduler,
            keepalive_interval=self.keepalive_interval,
            dead_interval=self.dead_interval,
            congestion_control=self.congestion_control,
            queue_limit=self.queue_limit,
            early_drop=self.early_drop,
            early_drop_interval=self.early_drop_interval,
            delay_cutoff=self.delay_cutoff,
            delay_floor=self.delay_floor,
            equalize=self.equalize,
            equalize_remember=self.equalize_remember,
            compress_headers=self.compress_headers,
            ack_filter=self.ack_filter,
            bod_upper=self.bod_upper,
            bod_lower=self.bod_lower,
            classes=self.classes,
            silence_timeout_min=min(self.silence_timeout_min, self.dead_interval),
            return_holddown=self.return_holddown,
            sparse_priority=self.sparse_priority,
            fair_queue=self.fair_queue,
            probe_rates=self.probe_rates,
            nack=self.nack,
            loss_predictor=self.loss_predictor,
            loss_model=self.loss_model,
            gap_trace=self.gap_trace is not None,
            fec=self.fec,
            split_below=self.split_below,
        )


@dataclass(frozen=True, slots=True)
class ListenConfig:
    """Where the remote portal listens for its local portals."""

    address: str = DEFAULT_LISTEN_ADDRESS
    port: int = DEFAULT_PORT
    tcp: bool = False
    """Also accept TCP paths on the same port."""


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
    standby: bool = False  # issue 5: bandwidth on demand (joins above bod_upper)
    download_bps: int | None = None
    """The link's download rate: told to the remote portal, whose sending starts there."""
    transport: str = "udp"
    """"udp", or "tcp" for a network that blocks UDP (length-prefixed frames)."""

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
    security: SecureConfig | None = None
    """Keys, peers and mode (always set by the validator: key material is mandatory)."""
    api: ApiConfig | None = None
    """The REST API, dashboard and /metrics ([api]); None: not served."""
    routing: RoutingConfig = field(default_factory=lambda: RoutingConfig())
    """The routing mode applied on `up` and removed on `down` ([routing])."""


@dataclass(frozen=True, slots=True)
class ApiConfig:
    """[api]: where the REST API listens (loopback by default) and its bearer token."""

    address: str = DEFAULT_API_ADDRESS
    port: int = DEFAULT_API_PORT
    token: str = field(default="", repr=False)


@dataclass(frozen=True, slots=True)
class RoutingConfig:
    """[routing]: how traffic reaches the tunnel and leaves the remote portal.

    `nat` (remote): masquerade `prefixes` (default: the tunnel's routes) leaving by
    `interface`. `routed` (local): clients with the addresses in `prefixes`, on LAN
    `interface`, are policy-routed into the tunnel; (remote): forwarding, and proxy ARP
    on `interface` if given. `single-interface` (remote): the addresses in `prefixes`
    (usually the portal's own public address) go into the tunnel except braid's UDP port.
    """

    mode: str = "none"
    prefixes: tuple[Network, ...] = ()
    interface: str | None = None
    table: int = DEFAULT_ROUTING_TABLE


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


def parse_classes(raw: Any, *, source: str = "<config>") -> tuple[TrafficClass, ...]:
    """Validate the value of a config's `class` key (a list of [[class]] tables) alone, as
    `parse_config` would; raise `ConfigError` (one line, field ``class[N]...``)."""
    validator = _Validator(source)
    return validator.classes(_Table(validator, "", {"class": raw}))


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

    def choice(self, t: _Table, key: str, choices: Sequence[str], *, default: str) -> str:
        """A string that must be one of `choices` (the error lists them)."""
        expected = "one of " + ", ".join(f'"{c}"' for c in choices)
        value = self.string(t, key, default=default, expected=expected)
        assert value is not None
        if value not in choices:
            self.fail(t.field(key), f"{_show(value)} is unknown; expected {expected}")
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
        top.known.extend(
            (
                "role",
                "tunnel",
                "session",
                "listen",
                "link",
                "class",
                "private_key",
                "private_key_file",
                "encryption",
                "peer",
                "api",
                "routing",
            )
        )
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
        session_table = self.table(top, "session", required=False)
        session_security = self.session_security(session_table)
        session = self.session(session_table)
        classes = self.classes(top)  # issue 5
        if classes:
            session = dataclasses.replace(session, classes=classes)

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
        security = self.security(top, role, *session_security)
        api_table = self.table(top, "api", required=False)
        api = self.api(api_table) if api_table is not None else None
        routing = self.routing(self.table(top, "routing", required=False), role, tunnel)
        top.finish()
        return PortalConfig(
            role=role,
            tunnel=tunnel,
            session=session,
            listen=listen,
            links=links,
            source=self.source,
            security=security,
            api=api,
            routing=routing,
        )

    # -- api and routing --

    def api(self, t: _Table) -> ApiConfig:
        address = self.string(
            t, "listen", default=DEFAULT_API_ADDRESS, expected='an IP address like "127.0.0.1"'
        )
        assert address is not None
        try:
            ipaddress.ip_address(address)
        except ValueError:
            self.fail(
                t.field("listen"),
                f'{_show(address)} is not an IP address; expected e.g. "127.0.0.1" or "::1"',
            )
        port = self.integer(
            t, "port", default=DEFAULT_API_PORT, low=1, high=65535, expected="a TCP port 1..65535"
        )
        assert port is not None
        token = self.string(t, "token", default=None, expected="a string of 16+ characters")
        token_file = self.string(t, "token_file", default=None, expected="a file path")
        if token is not None and token_file is not None:
            self.fail(t.field("token_file"), "given with token; expected only one of them")
        if token_file is not None:
            token = self.read_key_file(t.field("token_file"), token_file).strip()
        how = "generate one with `braid genkey`"
        if token is None:
            self.fail(
                t.field("token"),
                f'missing; expected token = "..." or token_file = "PATH" ({how})',
            )
        if len(token) < API_TOKEN_MIN or any(c.isspace() for c in token):
            self.fail(
                t.field("token_file" if token_file is not None else "token"),
                f"too short or has spaces; expected {API_TOKEN_MIN}+ characters without spaces"
                f" ({how})",
            )
        t.finish()
        return ApiConfig(address=address, port=port, token=token)

    def routing(self, t: _Table | None, role: Role, tunnel: TunnelConfig) -> RoutingConfig:
        if t is None:
            return RoutingConfig()
        expected_modes = "one of " + ", ".join(f'"{m}"' for m in ROUTING_MODES)
        mode = self.string(t, "mode", default="none", expected=expected_modes)
        assert mode is not None
        if mode not in ROUTING_MODES:
            self.fail(t.field("mode"), f"{_show(mode)} is unknown; expected {expected_modes}")
        if role == "local" and mode in ("nat", "single-interface"):
            self.fail(
                t.field("mode"),
                f'"{mode}" is a remote portal mode; expected "routed" or "none" on a local portal',
            )
        prefixes: list[Network] = []
        raw = t.get("prefixes")
        if raw is not None:
            if not isinstance(raw, list):
                self.fail(
                    t.field("prefixes"),
                    f'{_show(raw)} is {_kind(raw)}; expected a list like ["10.1.0.0/24"]',
                )
            for i, item in enumerate(raw):
                prefixes.append(self.prefix(f"{t.field('prefixes')}[{i}]", item))
        elif mode == "nat":
            prefixes = list(tunnel.routes)
        if mode in ("nat", "routed", "single-interface") and not prefixes:
            self.fail(
                t.field("prefixes"),
                f'missing; mode "{mode}" needs the addresses it handles, e.g. prefixes ='
                ' ["10.1.0.0/24"]',
            )
        interface = self.string(t, "interface", default=None, expected="an interface name")
        if interface is not None:
            self.check_ifname(t.field("interface"), interface)
        if interface is None and (
            mode == "single-interface" or (mode, role) == ("routed", "local")
        ):
            self.fail(
                t.field("interface"),
                f'missing; mode "{mode}" needs the interface'
                + (" the clients are on" if mode == "routed" else " of the portal")
                + ', e.g. interface = "eth0"',
            )
        table = self.integer(
            t,
            "table",
            default=DEFAULT_ROUTING_TABLE,
            low=1,
            high=2**31 - 1,
            expected="a routing table id 1..2147483647 (not 253-255)",
        )
        assert table is not None
        if table in (253, 254, 255):
            self.fail(t.field("table"), f"{table} is a system table; expected another id")
        t.finish()
        return RoutingConfig(mode=mode, prefixes=tuple(prefixes), interface=interface, table=table)

    # -- security --

    def session_security(self, t: _Table | None) -> tuple[bool | None, float]:
        """`encryption` and `rekey_interval` of the [session] table (None: not given)."""
        if t is None:
            return None, REKEY_AFTER_TIME
        encryption = self.boolean(t, "encryption")
        rekey = self.number(
            t,
            "rekey_interval",
            default=REKEY_AFTER_TIME,
            low=1.0,
            high=REKEY_AFTER_TIME,
            expected=f"seconds, 1..{REKEY_AFTER_TIME:g} (lower only for tests)",
        )
        return encryption, rekey

    def switch(self, t: _Table, key: str, modes: Sequence[str], *, default: str) -> str:
        """One of `modes` ("off", ..., "on"), or true ("on") / false ("off")."""
        value = t.get(key)
        if isinstance(value, bool):
            return "on" if value else "off"
        if value is not None and not isinstance(value, str):
            expected = "true, false or one of " + ", ".join(f'"{m}"' for m in modes)
            self.fail(t.field(key), f"{_show(value)} is {_kind(value)}; expected {expected}")
        return self.choice(t, key, modes, default=default)

    def boolean(self, t: _Table, key: str) -> bool | None:
        value = t.get(key)
        if value is None:
            return None
        if not isinstance(value, bool):
            self.fail(t.field(key), f"{_show(value)} is {_kind(value)}; expected true or false")
        return value

    def security(
        self, top: _Table, role: Role, session_encryption: bool | None, rekey: float
    ) -> SecureConfig:
        encryption = self.boolean(top, "encryption")
        if (
            encryption is not None
            and session_encryption is not None
            and encryption != session_encryption
        ):
            self.fail(
                "encryption",
                "differs from session.encryption; expected the setting in one place only",
            )
        mode = (
            encryption
            if encryption is not None
            else (session_encryption if session_encryption is not None else True)
        )
        private = self.key_material(top, "private_key", required=True, how="braid genkey")
        assert private is not None
        peers = self.peers(top, role)
        own = public_key(private)
        for i, peer in enumerate(peers):
            if peer.public_key == own:
                self.fail(
                    f"peer[{i}].public_key",
                    "is this portal's own public key; expected the other portal's"
                    " (`braid pubkey < its private key`)",
                )
        return SecureConfig(
            private_key=private, peers=peers, encryption=mode, rekey_after_time=rekey
        )

    def key_material(self, t: _Table, key: str, *, required: bool, how: str) -> bytes | None:
        """A 32-byte key given inline (`key`) or in a file (`key`_file, mode 600)."""
        file_key = f"{key}_file"
        inline = self.string(t, key, default=None, expected=f"a base64 key (`{how}`)")
        path_text = self.string(t, file_key, default=None, expected="the path of a key file")
        if inline is not None and path_text is not None:
            self.fail(
                t.field(file_key), f"given together with {key}; expected one of {key}, {file_key}"
            )
        if inline is None and path_text is None:
            if required:
                self.fail(
                    t.field(key),
                    f'missing; expected {key} = "BASE64" or {file_key} = "PATH"'
                    f" (make one with `{how}`)",
                )
            return None
        if inline is not None:
            field_name, text = t.field(key), inline
        else:
            assert path_text is not None
            field_name = t.field(file_key)
            text = self.read_key_file(field_name, path_text)
        try:
            return decode_key(text)
        except ValueError:
            self.fail(
                field_name,
                f"is not a key; expected 44 characters of base64 (32 bytes), as printed by `{how}`",
            )

    def read_key_file(self, field: str, path_text: str) -> str:
        path = Path(path_text)
        if not path.is_absolute() and not self.source.startswith("<"):
            path = Path(self.source).parent / path
        try:
            info = os.stat(path)
            text = path.read_text(encoding="ascii")
        except FileNotFoundError:
            self.fail(field, f"{_show(path_text)}: no such file; expected the path of a key file")
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else "not ASCII text"
            self.fail(field, f"{_show(path_text)}: cannot read ({why}); expected a key file")
        if not stat.S_ISREG(info.st_mode):
            self.fail(field, f"{_show(path_text)} is not a regular file; expected a key file")
        if info.st_mode & 0o077:
            self.fail(
                field,
                f"{_show(path_text)} is readable by group/others (mode"
                f" {stat.S_IMODE(info.st_mode):03o}); run `chmod 600 {path}`",
            )
        return text

    def peers(self, top: _Table, role: Role) -> tuple[PeerSpec, ...]:
        raw = top.get("peer")
        what = (
            "one [[peer]] table with the remote portal's public_key"
            if role == "local"
            else "a [[peer]] table per local portal (public_key, allowed_ips)"
        )
        if raw is None:
            self.fail("peer", f"missing; expected {what}")
        if not isinstance(raw, list) or not raw:
            self.fail("peer", f"{_show(raw)} is {_kind(raw)}; expected {what}")
        if role == "local" and len(raw) != 1:
            self.fail("peer", f"{len(raw)} peers; expected {what}")
        peers: list[PeerSpec] = []
        keys: dict[bytes, int] = {}
        names: dict[str, int] = {}
        for i, item in enumerate(raw):
            if not isinstance(item, dict):
                self.fail(
                    f"peer[{i}]", f"{_show(item)} is {_kind(item)}; expected a [[peer]] table"
                )
            t = _Table(self, f"peer[{i}]", item)
            peer = self.peer(t, role)
            if peer.public_key in keys:
                self.fail(
                    t.field("public_key"),
                    f"is already the key of peer[{keys[peer.public_key]}]; expected one"
                    " [[peer]] per portal",
                )
            keys[peer.public_key] = i
            if peer.name:
                if peer.name in names:
                    self.fail(
                        t.field("name"),
                        f'"{peer.name}" is already the name of peer[{names[peer.name]}];'
                        " expected unique names",
                    )
                names[peer.name] = i
            peers.append(peer)
        seen: list[tuple[int, Network]] = []
        for i, peer in enumerate(peers):
            for net in peer.allowed_ips:
                for j, other in seen:
                    if j != i and net.version == other.version and net.overlaps(other):
                        self.fail(
                            f"peer[{i}].allowed_ips",
                            f'"{net}" overlaps "{other}" of peer[{j}]; expected disjoint'
                            " prefixes per peer",
                        )
                seen.append((i, net))
        return tuple(peers)

    def peer(self, t: _Table, role: Role) -> PeerSpec:
        name = self.string(t, "name", default="", expected='a peer name like "site-a"')
        assert name is not None
        if name and not _NAME_RE.match(name):
            self.fail(
                t.field("name"),
                f"{_show(name)} is not a valid name; expected 1..32 letters, digits, '_', '.', '-'",
            )
        text = self.string(
            t, "public_key", default=None, expected="a base64 public key (`braid pubkey`)"
        )
        if text is None:
            self.fail(
                t.field("public_key"),
                "missing; expected the peer's public key (`braid pubkey < its private key`)",
            )
        try:
            key = decode_key(text)
        except ValueError:
            self.fail(
                t.field("public_key"),
                "is not a key; expected 44 characters of base64, as printed by `braid pubkey`",
            )
        psk = self.key_material(t, "preshared_key", required=False, how="braid genkey")
        allowed: list[Network] = []
        raw = t.get("allowed_ips")
        field_name = t.field("allowed_ips")
        if raw is None:
            if role == "remote":
                self.fail(
                    field_name,
                    "missing; expected the inner prefixes this peer may send from, e.g."
                    ' ["10.1.0.0/24"]',
                )
        elif not isinstance(raw, list) or not raw:
            self.fail(
                field_name, f'{_show(raw)} is {_kind(raw)}; expected a list like ["10.1.0.0/24"]'
            )
        else:
            for i, item in enumerate(raw):
                net = self.prefix(f"{field_name}[{i}]", item)
                if net in allowed:
                    self.fail(
                        f"{field_name}[{i}]", f'"{net}" is listed twice; expected distinct prefixes'
                    )
                allowed.append(net)
        t.finish()
        return PeerSpec(public_key=key, preshared_key=psk, allowed_ips=tuple(allowed), name=name)

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
        scheduler = self.choice(t, "scheduler", known_schedulers(), default=defaults.scheduler)
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
        # -- issue 5 keys
        expected_cc = "one of " + ", ".join(f'"{n}"' for n in CONGESTION_CONTROLS)
        congestion = self.string(
            t, "congestion_control", default=defaults.congestion_control, expected=expected_cc
        )
        assert congestion is not None
        if congestion not in CONGESTION_CONTROLS:
            self.fail(
                t.field("congestion_control"),
                f"{_show(congestion)} is unknown; expected {expected_cc}",
            )
        queue_limit = self.number(
            t,
            "queue_limit",
            default=defaults.queue_limit,
            low=0.005,
            high=2.0,
            expected="seconds, 0.005..2",
        )
        early_drop = self.number(
            t,
            "early_drop",
            default=defaults.early_drop,
            low=0.0,
            high=0.95,
            expected="a fraction of queue_limit, 0..0.95 (0: off)",
        )
        early_drop_interval = self.number(
            t,
            "early_drop_interval",
            default=defaults.early_drop_interval,
            low=0.01,
            high=2.0,
            expected="seconds, 0.01..2",
        )
        delay_cutoff = self.number(
            t,
            "delay_cutoff",
            default=defaults.delay_cutoff,
            low=0.0,
            high=10.0,
            expected="seconds, 0..10",
        )
        delay_floor = self.number(
            t,
            "delay_floor",
            default=defaults.delay_floor,
            low=0.0,
            high=4.0,
            expected="a factor, 0..4 (0: off)",
        )
        equalize = self.choice(t, "equalize", EQUALIZE_MODES, default=defaults.equalize)
        equalize_remember = self.number(
            t,
            "equalize_remember",
            default=defaults.equalize_remember,
            low=0.0,
            high=86_400.0,
            expected="seconds, 0..86400 (0: off)",
        )
        compress = self.boolean(t, "compress_headers")
        clamp = self.boolean(t, "clamp_mss")
        ack_filter = self.boolean(t, "ack_filter")
        bod_upper = self.number(
            t,
            "bod_upper",
            default=defaults.bod_upper,
            low=0.01,
            high=1.0,
            expected="a utilisation, 0.01..1",
        )
        bod_lower = self.number(
            t,
            "bod_lower",
            default=defaults.bod_lower,
            low=0.0,
            high=1.0,
            expected="a utilisation, 0..1",
        )
        if not 0 < bod_lower < bod_upper:
            self.fail(
                t.field("bod_lower"),
                f"{bod_lower:g} is not between 0 and bod_upper ({bod_upper:g}); expected e.g. 0.5",
            )
        # -- end issue 5 keys
        silence = self.number(
            t,
            "silence_timeout_min",
            default=defaults.silence_timeout_min,
            low=0.05,
            high=600.0,
            expected="seconds, 0.05..600 (dead_interval or more: off)",
        )
        holddown = self.number(
            t,
            "return_holddown",
            default=defaults.return_holddown,
            low=0.0,
            high=60.0,
            expected="seconds, 0..60",
        )
        sparse = self.boolean(t, "sparse_priority")
        fair = self.boolean(t, "fair_queue")
        probe_rates = self.boolean(t, "probe_rates")
        # -- issue 7 keys
        nack = self.switch(t, "nack", NACK_MODES, default=defaults.nack_mode)
        predictor = self.boolean(t, "loss_predictor")
        model: LossModel | None = None
        model_file = self.string(t, "loss_model", default=None, expected="a model file path")
        if model_file is not None:
            try:
                model = load_model(Path(model_file).read_text())
            except OSError as exc:
                self.fail(
                    t.field("loss_model"),
                    f"cannot read {_show(model_file)} ({exc.strerror}); expected a model file "
                    "written by `braid train`",
                )
            except ValueError as exc:
                self.fail(t.field("loss_model"), f"{exc}; expected a file from `braid train`")
        gap_trace = self.string(
            t, "gap_trace", default=None, expected="a file path to append gap samples to"
        )
        fec = self.choice(t, "fec", FEC_MODES, default=defaults.fec)
        split_below = 0
        split_raw = t.get("split_below")
        if split_raw is not None:
            expected_split = 'a rate like "2mbit": split large packets while every link is slower'
            parsed = parse_rate(split_raw) if isinstance(split_raw, str) else None
            if parsed is None:
                self.fail(
                    t.field("split_below"),
                    f"{_show(split_raw)} is not a rate; expected {expected_split}",
                )
            split_below = parsed
        t.finish()
        return SessionSettings(
            scheduler=scheduler,
            keepalive_interval=keepalive,
            dead_interval=dead,
            congestion_control=congestion,
            queue_limit=queue_limit,
            early_drop=early_drop,
            early_drop_interval=early_drop_interval,
            delay_cutoff=delay_cutoff,
            delay_floor=delay_floor,
            equalize=equalize,
            equalize_remember=equalize_remember,
            compress_headers=defaults.compress_headers if compress is None else compress,
            clamp_mss=True if clamp is None else clamp,
            ack_filter=defaults.ack_filter if ack_filter is None else ack_filter,
            bod_upper=bod_upper,
            bod_lower=bod_lower,
            silence_timeout_min=silence,
            return_holddown=holddown,
            sparse_priority=defaults.sparse_priority if sparse is None else sparse,
            fair_queue=defaults.fair_queue if fair is None else fair,
            probe_rates=defaults.probe_rates if probe_rates is None else probe_rates,
            nack=nack,
            loss_predictor=defaults.loss_predictor if predictor is None else predictor,
            loss_model=model,
            gap_trace=gap_trace,
            fec=fec,
            split_below=split_below,
        )

    # -- issue 5: [[class]] tables (traffic classes) --

    def classes(self, top: _Table) -> tuple[TrafficClass, ...]:
        raw = top.get("class")
        if raw is None:
            return ()
        if not isinstance(raw, list):
            self.fail("class", f"{_show(raw)} is {_kind(raw)}; expected [[class]] tables")
        classes: list[TrafficClass] = []
        names = known_schedulers()
        expected_sched = "one of " + ", ".join(f'"{n}"' for n in names)
        for i, item in enumerate(raw):
            field = f"class[{i}]"
            if not isinstance(item, dict):
                self.fail(field, f"{_show(item)} is {_kind(item)}; expected a [[class]] table")
            t = _Table(self, field, item)
            name = self.string(t, "name", default=None, expected="a class name")
            if not name:
                self.fail(t.field("name"), 'missing; expected a name, e.g. name = "voice"')
            if any(c.name == name for c in classes):
                self.fail(
                    t.field("name"), f"{_show(name)} is already a class; expected unique names"
                )
            match = self.table(t, "match", required=False)
            sets: dict[str, frozenset[int] | None] = {"dscp": None, "proto": None, "ports": None}
            max_size: int | None = None
            if match is not None:
                for key, high in (("dscp", 63), ("proto", 255), ("ports", 65535)):
                    value = match.get(key)
                    if value is None:
                        continue
                    values = value if isinstance(value, list) else [value]
                    if not values or any(
                        isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= high
                        for v in values
                    ):
                        self.fail(
                            match.field(key),
                            f"{_show(value)} is not an integer or a list of integers 0..{high}",
                        )
                    sets[key] = frozenset(values)
                max_size = self.integer(
                    match, "max_size", default=None, low=1, high=65535, expected="bytes, 1..65535"
                )
                match.finish()
            priority = self.integer(
                t, "priority", default=0, low=0, high=7, expected="0..7 (> 0: real time)"
            )
            assert priority is not None
            scheduler = self.string(t, "scheduler", default=None, expected=expected_sched)
            if scheduler is not None and scheduler not in names:
                self.fail(
                    t.field("scheduler"),
                    f"{_show(scheduler)} is unknown; expected {expected_sched}",
                )
            class_nack = self.boolean(t, "nack")  # issue 7
            class_fec = self.boolean(t, "fec")
            class_equalize = self.string(
                t, "equalize", default=None, expected='"ack" or "off" (the session\'s if absent)'
            )
            if class_equalize is not None and class_equalize not in ("ack", "off"):
                self.fail(
                    t.field("equalize"),
                    f'{_show(class_equalize)} is unknown; expected "ack" or "off" (a class'
                    " overrides the session's equalize for its TCP connections)",
                )
            t.finish()
            classes.append(
                TrafficClass(
                    name,
                    dscp=sets["dscp"],
                    proto=sets["proto"],
                    ports=sets["ports"],
                    max_size=max_size,
                    priority=priority,
                    scheduler=scheduler,
                    nack=class_nack,
                    fec=class_fec,
                    equalize=class_equalize,
                )
            )
        return tuple(classes)

    # -- end issue 5 [[class]]

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
        tcp = bool(self.boolean(t, "tcp"))
        t.finish()
        return ListenConfig(address=address, port=port, tcp=tcp)

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

        rate_bps = self.link_rate(t, "rate")
        download_bps = self.link_rate(t, "download")

        metric = self.integer(
            t, "metric", default=0, low=0, high=255, expected="an integer 0..255 (lower preferred)"
        )
        assert metric is not None
        standby = bool(self.boolean(t, "standby"))  # issue 5: bandwidth on demand
        transport = self.string(t, "transport", default="udp", expected='"udp" or "tcp"')
        if transport not in ("udp", "tcp"):
            self.fail(
                t.field("transport"), f'{_show(transport)} is unknown; expected "udp" or "tcp"'
            )
        assert transport is not None
        t.finish()
        return LinkConfig(
            standby=standby,
            transport=transport,
            name=name,
            remote_host=host,
            remote_port=port,
            interface=interface,
            source=source,
            rate_bps=rate_bps,
            metric=metric,
            download_bps=download_bps,
        )

    def link_rate(self, t: _Table, key: str) -> int | None:
        """An optional rate like "20mbit" (bit/s)."""
        raw = t.get(key)
        if raw is None:
            return None
        field = t.field(key)
        expected = 'a rate like "20mbit" (units kbit, mbit, gbit)'
        if isinstance(raw, bool) or not isinstance(raw, str):
            self.fail(field, f"{_show(raw)} is {_kind(raw)}; expected {expected}")
        rate = parse_rate(raw)
        if rate is None:
            self.fail(field, f"{_show(raw)} is not a rate; expected {expected}")
        if rate <= 0:
            self.fail(field, f"{_show(raw)} is zero; expected a positive rate")
        return rate

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
    clamp = f", TCP MSS clamped to {mss_for_mtu(t.mtu)}" if config.session.clamp_mss else ""
    yield f"role {config.role}; tunnel {t.name} {addresses} mtu {t.mtu}{clamp}"
    if t.routes:
        yield "routes " + ", ".join(str(r) for r in t.routes)
    s = config.session
    yield (
        f"session scheduler {s.scheduler}, keepalive {s.keepalive_interval:g}s,"
        f" dead after {s.dead_interval:g}s"
    )
    sec = config.security
    if sec is not None:
        import base64

        mode = "encrypted" if sec.encryption else "auth-only (payload in clear)"
        own = base64.b64encode(public_key(sec.private_key)).decode()
        yield f"security {mode}, public key {own}, rekey every {sec.rekey_after_time:g}s"
        for i, peer in enumerate(sec.peers):
            allowed = ", ".join(str(n) for n in peer.allowed_ips) or "any source"
            psk = " + psk" if peer.preshared_key else ""
            label = f" {peer.name}" if peer.name else ""
            key = base64.b64encode(peer.public_key).decode()
            yield f"peer {i}{label}: {key}{psk}, allowed {allowed}"
    if config.api is not None:
        aa = config.api.address
        yield f"api http://{'[' + aa + ']' if ':' in aa else aa}:{config.api.port}/ (token set)"
    if config.routing.mode != "none":
        r = config.routing
        dev = f" on {r.interface}" if r.interface else ""
        yield f"routing {r.mode} for {', '.join(str(p) for p in r.prefixes)}{dev}"
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
        if link.download_bps:
            extras += f" download {format_rate(link.download_bps)}"
        if link.metric:
            extras += f" metric {link.metric}"
        yield f"link {i} {link.name}: {pin} -> {link.remote_text}{extras}"
