"""Lab scenarios: TOML files describing links, events, traffic and which series to run.

The format is documented in docs/lab.md. Loading validates everything up front: an unknown
key, a bad unit or an out-of-range value raises ``ScenarioError`` with one line naming the
key and what is expected, before any namespace is built.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from braid.control.config import ConfigError, parse_classes
from braid.lab.emulator import LinkShape
from braid.lab.topology import MAX_LINKS
from braid.lab.traffic import TrafficSpec
from braid.lab.units import format_duration, format_rate, parse_duration, parse_percent, parse_rate

SERIES_FIXED = ("mptcp", "braid")
DIRECTIONS = ("up", "down", "both")
CONGESTION = ("cubic", "bbr", "reno")
ACTIONS = ("cut", "restore")
TOP_KEYS = {
    "name",
    "description",
    "duration",
    "repeat",
    "interval",
    "series",
    "traffic",
    "direction",
    "cc",
    "rate_hints",
    "link",
    "event",
    "braid",
    "class",
}
LINK_KEYS = {
    "name",
    "rate",
    "up",
    "down",
    "delay",
    "jitter",
    "loss",
    "loss_burst",
    "queue",
    "reorder",
    "mtu",
}
EVENT_KEYS = {"at", "link", "set", "action"}
SET_KEYS = {"rate", "up", "down", "delay", "jitter", "loss", "loss_burst"}


class ScenarioError(ValueError):
    """A scenario that cannot be run; the message is one line naming the key."""


@dataclass(frozen=True)
class LinkSpec:
    """One link of a scenario (see LinkShape for the units)."""

    shape: LinkShape
    name: str = ""

    def describe(self) -> str:
        """A short human description: "20mbit 10ms" or "10/40mbit 30ms 1% loss"."""
        s = self.shape
        if s.rate_up_bps == s.rate_down_bps:
            rate = format_rate(s.rate_up_bps)
        else:
            rate = f"{format_rate(s.rate_up_bps)} up/{format_rate(s.rate_down_bps)} down"
        parts = [rate, format_duration(s.delay)]
        if s.jitter:
            parts.append(f"±{format_duration(s.jitter)}")
        if s.loss:
            parts.append(f"{s.loss * 100:g}% loss")
            if s.loss_burst is not None:
                parts.append(f"in bursts of {s.loss_burst:g}")
        return " ".join(parts)


@dataclass(frozen=True)
class Event:
    """Something that happens to a link ``at`` seconds after traffic starts."""

    at: float
    link: int
    action: str  # "set", "cut" or "restore"
    changes: dict[str, Any] = field(default_factory=dict)  # LinkShape fields, for "set"

    def describe(self) -> str:
        """A short label for plots and tables: "link 2 cut", "link 1 rate 10mbit"."""
        if self.action != "set":
            return f"link {self.link} {self.action}"
        parts = []
        up = self.changes.get("rate_up_bps")
        down = self.changes.get("rate_down_bps")
        if up is not None and up == down:
            parts.append(f"rate {format_rate(up)}")
        else:
            if up is not None:
                parts.append(f"up {format_rate(up)}")
            if down is not None:
                parts.append(f"down {format_rate(down)}")
        for key in ("delay", "jitter"):
            if key in self.changes:
                parts.append(f"{key} {format_duration(self.changes[key])}")
        if "loss" in self.changes:
            parts.append(f"loss {self.changes['loss'] * 100:g}%")
        if "loss_burst" in self.changes:
            burst = self.changes["loss_burst"]
            parts.append("independent loss" if burst is None else f"loss bursts of {burst:g}")
        return f"link {self.link} {', '.join(parts)}"


@dataclass(frozen=True)
class Scenario:
    """A validated scenario."""

    name: str
    links: tuple[LinkSpec, ...]
    duration: float = 10.0
    repeat: int = 1
    interval: float = 0.5
    series: tuple[str, ...] = ("links", "mptcp", "braid")
    traffic: TrafficSpec = field(default_factory=lambda: TrafficSpec("tcp"))
    direction: str = "up"
    cc: str = "cubic"
    events: tuple[Event, ...] = ()
    braid: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    classes: tuple[dict[str, Any], ...] = ()
    """[[class]] tables, as in a portal config, given to both portals."""
    rate_hints: bool = True
    """Whether the local portal's config gives each link's rates (`rate`, `download`), as a
    site that knows its links would; False: every path's rate is estimated from feedback
    alone, from the portals' start."""

    def series_names(self) -> list[str]:
        """The series to run, "links" expanded into link-1 ... link-N."""
        names: list[str] = []
        for entry in self.series:
            if entry == "links":
                names += [f"link-{k}" for k in range(1, len(self.links) + 1)]
            else:
                names.append(entry)
        return list(dict.fromkeys(names))

    def shapes(self) -> list[LinkShape]:
        """The links' initial shapes."""
        return [link.shape for link in self.links]


def bundled_dir() -> Path:
    """The folder of the scenarios shipped with braid."""
    return Path(str(resources.files("braid.lab") / "scenarios"))


def bundled_scenarios() -> list[str]:
    """Names of the bundled scenarios."""
    return sorted(path.stem for path in bundled_dir().glob("*.toml"))


def resolve(name_or_path: str) -> Path:
    """A scenario file from a path, or from the name of a bundled scenario."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    bundled = bundled_dir() / f"{name_or_path.removesuffix('.toml')}.toml"
    if bundled.is_file():
        return bundled
    names = ", ".join(bundled_scenarios())
    raise ScenarioError(f"no scenario file {name_or_path!r}; bundled scenarios: {names}")


def load_scenario(name_or_path: str) -> Scenario:
    """Read and validate a scenario file (a path or a bundled name)."""
    path = resolve(name_or_path)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: not valid TOML: {exc}") from exc
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror}") from exc
    return parse_scenario(data, name=path.stem, source=str(path))


def _get(
    table: dict[str, Any], key: str, where: str, parse: Callable[[Any], Any], default: Any
) -> Any:
    if key not in table:
        return default
    try:
        return parse(table[key])
    except (ValueError, TypeError) as exc:
        raise ScenarioError(f"{where}{key}: {exc}") from None


def _check_keys(table: Any, allowed: set[str], where: str) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise ScenarioError(f"{where.rstrip(': .')}: expected a table")
    for key in table:
        if key not in allowed:
            expected = ", ".join(sorted(allowed))
            raise ScenarioError(f"{where}unknown key {key!r} (expected one of: {expected})")
    return table


def _positive_int(low: int, high: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"expected a whole number from {low} to {high}, got {value!r}")
        return value

    return parse


def _positive_seconds(value: Any) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"expected a positive number of seconds, got {value!r}")
    return seconds


def _choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if value not in options:
            raise ValueError(f"expected one of {', '.join(options)}, got {value!r}")
        return str(value)

    return parse


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def _loss_burst(value: Any) -> float | None:
    """A mean loss burst length in packets (>= 1), or 0 for independent loss (None)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (value == 0 or value >= 1)
    ):
        raise ValueError(
            f"expected a mean burst length in packets (a number >= 1; 0 for independent "
            f"loss), got {value!r}"
        )
    return None if value == 0 else float(value)


def _check_shape(shape: LinkShape, where: str) -> None:
    try:
        shape.check()
    except ValueError as exc:
        raise ScenarioError(f"{where}loss_burst: {exc}") from None


def _queue(value: Any) -> tuple[float, int | None]:
    """A queue limit: "50ms" (time at the link's rate) or "100p" (packets)."""
    if isinstance(value, str) and value.strip().lower().endswith(("p", "pkt", "packets")):
        digits = value.strip().lower().rstrip("packets").rstrip("pkt").rstrip("p").strip()
        if digits.isdigit() and int(digits) > 0:
            return 0.0, int(digits)
        raise ValueError(f'expected a queue limit such as "50ms" or "100p", got {value!r}')
    try:
        return _positive_seconds(value), None
    except ValueError:
        raise ValueError(
            f'expected a queue limit such as "50ms" or "100p", got {value!r}'
        ) from None


def _rates(table: dict[str, Any], where: str, required: bool) -> dict[str, float]:
    rates: dict[str, float] = {}
    if "rate" in table and ("up" in table or "down" in table):
        raise ScenarioError(f"{where}rate: give either rate or up/down, not both")
    if "rate" in table:
        rate = _get(table, "rate", where, parse_rate, None)
        rates = {"rate_up_bps": rate, "rate_down_bps": rate}
    else:
        if "up" in table:
            rates["rate_up_bps"] = _get(table, "up", where, parse_rate, None)
        if "down" in table:
            rates["rate_down_bps"] = _get(table, "down", where, parse_rate, None)
        if required and len(rates) != 2:
            missing = "down" if "rate_up_bps" in rates else "up" if rates else "rate"
            raise ScenarioError(f'{where}{missing}: required (a rate such as "20mbit")')
    return rates


def parse_link(table: Any, number: int) -> LinkSpec:
    """Validate one [[link]] table."""
    where = f"[[link]] {number}: "
    table = _check_keys(table, LINK_KEYS, where)
    rates = _rates(table, where, required=True)
    queue, queue_packets = _get(table, "queue", where, _queue, (0.05, None))
    shape = LinkShape(
        rate_up_bps=rates["rate_up_bps"],
        rate_down_bps=rates["rate_down_bps"],
        delay=_get(table, "delay", where, parse_duration, 0.0),
        jitter=_get(table, "jitter", where, parse_duration, 0.0),
        loss=_get(table, "loss", where, parse_percent, 0.0),
        queue=queue if queue_packets is None else 0.05,
        queue_packets=queue_packets,
        reorder=_get(table, "reorder", where, _bool, False),
        loss_burst=_get(table, "loss_burst", where, _loss_burst, None),
        mtu=_get(table, "mtu", where, _positive_int(576, 1500), None),
    )
    _check_shape(shape, where)
    return LinkSpec(shape=shape, name=_get(table, "name", where, _string, ""))


def parse_event(table: Any, number: int, links: int, duration: float) -> Event:
    """Validate one [[event]] table."""
    where = f"[[event]] {number}: "
    table = _check_keys(table, EVENT_KEYS, where)
    if "at" not in table:
        raise ScenarioError(f"{where}at: required (seconds after traffic starts)")
    at = _get(table, "at", where, parse_duration, 0.0)
    if at >= duration:
        raise ScenarioError(
            f"{where}at: {at:g} s is not before the end of the run ({duration:g} s)"
        )
    if "link" not in table:
        raise ScenarioError(f"{where}link: required (a link number from 1 to {links})")
    link = _get(table, "link", where, _positive_int(1, links), 1)
    if ("set" in table) == ("action" in table):
        raise ScenarioError(f'{where}set: give either set = {{...}} or action = "cut"/"restore"')
    if "action" in table:
        action = _get(table, "action", where, _choice(ACTIONS), "cut")
        return Event(at=at, link=link, action=action)
    changes_table = _check_keys(table["set"], SET_KEYS, f"{where}set.")
    if not changes_table:
        raise ScenarioError(
            f"{where}set: empty (give rate, up, down, delay, jitter, loss or loss_burst)"
        )
    changes: dict[str, Any] = dict(_rates(changes_table, f"{where}set.", required=False))
    parsers: tuple[tuple[str, Callable[[Any], Any]], ...] = (
        ("delay", parse_duration),
        ("jitter", parse_duration),
        ("loss", parse_percent),
        ("loss_burst", _loss_burst),
    )
    for key, parse in parsers:
        if key in changes_table:
            changes[key] = _get(changes_table, key, f"{where}set.", parse, 0.0)
    return Event(at=at, link=link, action="set", changes=changes)


def _series(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ValueError('expected a list such as ["links", "mptcp", "braid"]')
    for entry in value:
        ok = entry in ("links", *SERIES_FIXED) or (
            isinstance(entry, str)
            and entry.startswith("link-")
            and entry[5:].isdigit()
            and 1 <= int(entry[5:]) <= MAX_LINKS
        )
        if not ok:
            raise ValueError(f'expected "links", "link-K", "mptcp" or "braid", got {entry!r}')
    return tuple(value)


def _braid_value(value: Any) -> bool:
    if isinstance(value, str | int | float | bool):
        return True
    return isinstance(value, list) and all(isinstance(v, str | int | float | bool) for v in value)


def parse_scenario(data: dict[str, Any], *, name: str = "scenario", source: str = "") -> Scenario:
    """Validate a scenario read from TOML."""
    prefix = f"{source}: " if source else ""
    try:
        _check_keys(data, TOP_KEYS, "")
        raw_links = data.get("link")
        if not isinstance(raw_links, list) or not raw_links:
            raise ScenarioError("link: at least one [[link]] table is required")
        if len(raw_links) > MAX_LINKS:
            raise ScenarioError(f"link: at most {MAX_LINKS} links, got {len(raw_links)}")
        links = tuple(parse_link(table, k) for k, table in enumerate(raw_links, start=1))
        duration = _get(data, "duration", "", _positive_seconds, 10.0)
        raw_events = data.get("event", [])
        if not isinstance(raw_events, list):
            raise ScenarioError("event: expected [[event]] tables")
        numbered = sorted(
            (
                (parse_event(t, k, len(links), duration), k)
                for k, t in enumerate(raw_events, start=1)
            ),
            key=lambda pair: pair[0].at,
        )
        # Each "set" must leave its link emulable (say, loss vs loss_burst), in time order.
        shapes = [link.shape for link in links]
        for event, number in numbered:
            if event.action == "set":
                shapes[event.link - 1] = replace(shapes[event.link - 1], **event.changes)
                _check_shape(shapes[event.link - 1], f"[[event]] {number}: set.")
        events = tuple(event for event, _ in numbered)
        series = _get(data, "series", "", _series, ("links", "mptcp", "braid"))
        for entry in series:
            if entry.startswith("link-") and int(entry[5:]) > len(links):
                raise ScenarioError(f"series: {entry} but the scenario has {len(links)} links")
        braid = data.get("braid", {})
        if not isinstance(braid, dict):
            raise ScenarioError("braid: expected a table of session settings")
        for key, value in braid.items():
            if not _braid_value(value):
                raise ScenarioError(f"braid.{key}: expected a string, number, boolean or list")
        raw_classes = data.get("class")
        if raw_classes is not None:
            try:
                parse_classes(raw_classes, source="scenario")
            except ConfigError as exc:
                raise ScenarioError(f"{exc.field}: {exc.message}") from None
        interval = _get(data, "interval", "", _positive_seconds, 0.5)
        if interval < 0.1:
            raise ScenarioError("interval: iperf3 samples at most every 0.1 s")
        return Scenario(
            name=_get(data, "name", "", _string, name),
            description=_get(data, "description", "", _string, ""),
            links=links,
            duration=duration,
            repeat=_get(data, "repeat", "", _positive_int(1, 100), 1),
            interval=interval,
            series=series,
            traffic=_get(data, "traffic", "", TrafficSpec.parse, TrafficSpec("tcp")),
            direction=_get(data, "direction", "", _choice(DIRECTIONS), "up"),
            cc=_get(data, "cc", "", _choice(CONGESTION), "cubic"),
            events=events,
            braid=dict(braid),
            classes=tuple(dict(table) for table in raw_classes or ()),
            rate_hints=_get(data, "rate_hints", "", _bool, True),
        )
    except ScenarioError as exc:
        raise ScenarioError(f"{prefix}{exc}") from None
