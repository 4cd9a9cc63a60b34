"""The control service: get/set on plain data over a running portal.

The REST API, the Prometheus collector and (through the API) the CLI and the dashboard
read and change a portal only through `PortalService`. Every method runs on the
portal's event loop thread (aiohttp handlers and loop callbacks), so reading the
portal and its sessions needs no locking. Reads build plain JSON-ready dicts from
`statistics()` snapshots; writes go through the session's public methods
(`set_scheduler`, `update_path`, `add_path`, `remove_path`) and keep the portal's
own link list in step so that a restarted local session keeps the run-time changes.

Errors are `ServiceError(status, message)`: the API turns them into JSON errors.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from braid.core.session import SessionStatistics, TunnelSession
from braid.core.wire import FEATURE_COMPACT, FEATURE_HOLD, FEATURE_PACK, FEATURE_TRIM
from braid.io.base import DatagramEndpoint
from braid.runtime.portal import LocalPortal, PathLink, RemotePortal
from braid.runtime.stats import statistics_document

Session = Any  # a portal's session: `SecureSession` (or a bare `TunnelSession`)

#: Highest path id a link may take (the wire format's limit).
MAX_PATH_ID = 255
#: Longest link name accepted at run time (as in the config file).
MAX_LINK_NAME = 32

#: Session parameters changeable at run time: name -> (low, high, type). The session
#: reads these from its `config` whenever it uses them (the schedulers' are applied by
#: re-making the scheduler), so replacing the config applies them at once.
RUNTIME_PARAMETERS: dict[str, tuple[float, float, type]] = {
    "keepalive_interval": (0.01, 60.0, float),
    "dead_interval": (0.02, 600.0, float),
    "delay_cutoff": (0.001, 10.0, float),
    "bod_upper": (0.01, 1.0, float),
    "bod_lower": (0.01, 0.99, float),
    "redundant_copies": (1, 8, int),
}
_SCHEDULER_PARAMETERS = ("delay_cutoff", "redundant_copies")


class ServiceError(Exception):
    """A request the service refuses: an HTTP-like status and a one-line message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class EndpointOpener(Protocol):
    """Opens the socket of a new link (`braid.io.udp.open_path_socket` in production)."""

    def __call__(
        self,
        *,
        remote: tuple[str, int],
        interface: str | None = None,
        source: str | None = None,
        link: str | None = None,
    ) -> DatagramEndpoint: ...


@dataclass(frozen=True, slots=True)
class LinkSpec:
    """A link to add at run time (local portal)."""

    name: str
    remote: tuple[str, int]
    interface: str | None = None
    source: str | None = None
    rate_bps: int | None = None
    metric: int = 0
    download_bps: int | None = None


def _core(session: Any) -> TunnelSession:
    """The `TunnelSession` inside a portal's session (a `SecureSession` wraps one)."""
    inner = getattr(session, "inner", session)
    assert isinstance(inner, TunnelSession)
    return inner


def _finite(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return value


def _address_text(address: Any) -> str | None:
    if address is None:
        return None
    try:
        host, port = address[0], address[1]
    except (TypeError, IndexError):
        return str(address)
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def _inner_text(packed: bytes) -> str:
    import ipaddress

    return str(ipaddress.ip_address(packed))


def session_key(session_id: int) -> str:
    """A session id as the API writes it: 8 lowercase hex digits."""
    return f"{session_id:08x}"


def parse_session_key(text: str) -> int:
    """The session id in `text` (hex, as `session_key` writes it); ServiceError if invalid."""
    try:
        value = int(text, 16)
    except ValueError:
        raise ServiceError(
            404, f"session {text!r}: not a session id; expected 8 hex digits like '0a1b2c3d'"
        ) from None
    if not 0 <= value <= 0xFFFFFFFF or len(text) > 8:
        raise ServiceError(404, f"session {text!r}: not a session id; expected 8 hex digits")
    return value


class PortalService:
    """Get/set on plain data over a running `LocalPortal` or `RemotePortal`."""

    def __init__(
        self,
        portal: LocalPortal | RemotePortal,
        *,
        open_endpoint: EndpointOpener | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.portal = portal
        self._open_endpoint = open_endpoint
        self._clock = clock
        self.started = clock()
        #: Session id -> wall-clock time the service first saw it.
        self._first_seen: dict[int, float] = {}
        #: Local portal: links disabled at run time (socket kept open, no path in the session).
        self._disabled: dict[int, PathLink] = {}

    # -- helpers ---------------------------------------------------------------------

    @property
    def role(self) -> str:
        """ "local" or "remote"."""
        return self.portal.role

    def _now(self) -> float:
        return self.portal.loop.time()

    def _live_sessions(self) -> dict[int, Session]:
        portal = self.portal
        if isinstance(portal, LocalPortal):
            try:
                session = portal.session
            except RuntimeError:
                return {}
            return {} if session.closed else {session.session_id: session}
        return portal.sessions

    def track(self) -> None:
        """Note the sessions that appeared since the last call (for `up_since`); call ~1/s."""
        for sid in self._live_sessions():
            self._up_since(sid)

    def _up_since(self, session_id: int) -> float:
        seen = self._first_seen.get(session_id)
        if seen is None:
            seen = self._first_seen[session_id] = self._clock()
            if len(self._first_seen) > 4 * 1024:
                live = self._live_sessions()
                for sid in [s for s in self._first_seen if s not in live]:
                    del self._first_seen[sid]
        return seen

    def _session(self, key: str) -> Session:
        sid = parse_session_key(key)
        session = self._live_sessions().get(sid)
        if session is None:
            raise ServiceError(404, f"session {key}: no such session; see GET /api/v1/sessions")
        return session

    def _flush(self, session: Session) -> None:
        """Drain what a control change produced (HELLO, PATH_DOWN) right away."""
        portal = self.portal
        driven: Any
        if isinstance(portal, LocalPortal):
            driven = portal._driven
        else:
            driven = portal._sessions.get(session.session_id)
        if driven is not None and driven.session is session and portal.running:
            portal._flush(driven, self._now())

    def _path_endpoints(self, session_id: int) -> dict[int, str | None]:
        portal = self.portal
        if isinstance(portal, LocalPortal):
            out: dict[int, str | None] = {}
            for link in portal.links:
                out[link.path_id] = _endpoint_pair(link.endpoint)
            return out
        driven = portal._sessions.get(session_id)
        if driven is None:
            return {}
        return {pid: _address_text(a) for pid, a in driven.addresses.items()}

    def _egress(self, session_id: int) -> list[str]:
        portal = self.portal
        if isinstance(portal, LocalPortal):
            return [str(r) for r in getattr(portal.tun, "routes", ())]
        driven = portal._sessions.get(session_id)
        if driven is None:
            return []
        return sorted(_inner_text(s) for s in list(driven.sources)[:64])

    def path_names(self) -> dict[int, str]:
        portal = self.portal
        if isinstance(portal, LocalPortal):
            names = {link.path_id: link.name for link in portal.links}
            names.update({pid: link.name for pid, link in self._disabled.items()})
            return names
        return {}

    # -- reads -----------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """The portal: role, tunnel, version, uptime, sessions count, runtime counters."""
        from braid import __version__

        portal = self.portal
        return {
            "role": portal.role,
            "tunnel": portal.tun.name,
            "version": __version__,
            "started": self.started,
            "uptime": max(0.0, self._clock() - self.started),
            "scheduler": portal.session_config.scheduler,
            "sessions": len(self._live_sessions()),
            "counters": dataclasses.asdict(portal.counters()),
            "tun_queue_length": portal.tun_queue_length,
        }

    def sessions(self) -> list[dict[str, Any]]:
        """The session table: one entry per live session."""
        live = self._live_sessions()
        return [self._session_entry(live[sid].statistics()) for sid in sorted(live)]

    def session(self, key: str) -> dict[str, Any]:
        """One session of the table by its hex id; 404 if unknown."""
        return self._session_entry(self._session(key).statistics())

    def _session_entry(self, stats: SessionStatistics) -> dict[str, Any]:
        sid = stats.session_id
        endpoints = self._path_endpoints(sid)
        names = self.path_names()
        paths = [
            self._path_entry(p, names.get(p.path_id), endpoints.get(p.path_id), enabled=True)
            for p in stats.paths
        ]
        for pid, link in sorted(self._disabled.items()):
            paths.append(_disabled_entry(pid, link, endpoints.get(pid)))
        peer: str | None
        if isinstance(self.portal, LocalPortal):
            peer = next((_peer_of(link.endpoint) for link in self.portal.links), None)
        else:
            peer = next((e for e in endpoints.values() if e), None)
        config = self.portal.session_config
        return {
            "session_id": session_key(sid),
            "role": stats.role,
            "peer": peer,
            "up_since": self._up_since(sid),
            "closed": stats.closed,
            "early_drop_active": stats.early_drop_active,
            "parameters": {
                "scheduler": stats.scheduler,
                "reorder_timeout": _finite(stats.reorder_timeout),
                "equalize": config.equalize,
                "equalize_delay": stats.equalize_delay,
                # FEATURES: whether the peer's egress holds flagged DATA (None: not said)
                "peer_holds": (
                    None
                    if stats.peer_features is None
                    else bool(stats.peer_features & FEATURE_HOLD)
                ),
                "compress_headers": config.compress_headers,
                "clamp_mss": config.clamp_mss,
                "ack_filter": config.ack_filter,
                "fair_queue": config.fair_queue,
                "sparse_priority": config.sparse_priority,
                "probe_rates": config.probe_rates,
                # ... and whether it takes compressed headers (then this portal sends them)
                "peer_compacts": (
                    None
                    if stats.peer_features is None
                    else bool(stats.peer_features & FEATURE_COMPACT)
                ),
                # ... and trimmed compact TCP (6 bytes less per packet)
                "peer_trims": (
                    None
                    if stats.peer_features is None
                    else bool(stats.peer_features & FEATURE_TRIM)
                ),
                # ... and packed compact TCP (7 bytes less again over IPv4, 6 over IPv6)
                "peer_packs": (
                    None
                    if stats.peer_features is None
                    else bool(stats.peer_features & FEATURE_PACK)
                ),
                "keepalive_interval": config.keepalive_interval,
                "dead_interval": config.dead_interval,
                # issue 7: "off", "auto" or "on", and whether this egress NACKs now
                "nack": config.nack_mode,
                "nack_active": stats.nack_active,
            },
            "egress": self._egress(sid),
            "counters": {
                "packets_sent": stats.packets_sent,
                "bytes_sent": stats.bytes_sent,
                "packets_received": stats.packets_received,
                "packets_delivered": stats.packets_delivered,
                "bytes_delivered": stats.bytes_delivered,
                "datagrams_sent": stats.datagrams_sent,
                "datagrams_received": stats.datagrams_received,
                "send_no_path": stats.send_no_path,
                "send_queue_full": stats.send_queue_full,
                "send_rejected": stats.send_rejected,
                "failover_resent": stats.failover_resent,
                "failover_skipped": stats.failover_skipped,
                "failover_late": stats.failover_late,
                "path_info_sent": stats.path_info_sent,
                "path_info_applied": stats.path_info_applied,
                "rebalanced": stats.rebalanced,
                "queue_dropped": stats.queue_dropped,
                "early_dropped": stats.early_dropped,
                "early_marked": stats.early_marked,
                # issue 7: loss recovery
                "nack_sent": stats.nack_sent,
                "nack_received": stats.nack_received,
                "retransmitted": stats.retransmitted,
                "retransmit_gone": stats.retransmit_gone,
                "gaps_recovered": stats.gaps_recovered,
                "gaps_abandoned": stats.gaps_abandoned,
                "fec_group": stats.fec_group,
                "fec_parities": stats.fec_parities,
                "fec_recovered": stats.fec_recovered,
                "equalized": stats.equalized,
                "equalize_overflow": stats.equalize_overflow,
                "equalize_trials": stats.equalize_trials,
                "equalize_flows": stats.equalize_flows,
                "equalize_ahead": stats.equalize_ahead,
                "equalize_ends": dict(stats.equalize_ends),
                "equalize_pairs": stats.equalize_pairs,
                "equalize_paired": stats.equalize_paired,
                "mss_clamped": stats.mss_clamped,
                "acks_filtered": stats.acks_filtered,
                "sparse_jumps": stats.sparse_jumps,
                "sparse_queued": stats.sparse_queued,
                "fair_waiting": stats.fair_waiting,
                "fair_flows": stats.fair_flows,
                "compacted": stats.compacted,
                "compact_saved": stats.compact_saved,
                "compact_contexts": stats.compact_contexts,
                "expanded": stats.expanded,
                "drops": dict(stats.drops),
            },
            "paths": paths,
        }

    @staticmethod
    def _path_entry(
        p: Any, name: str | None, endpoint: str | None, *, enabled: bool
    ) -> dict[str, Any]:
        return {
            "path_id": p.path_id,
            "name": name,
            "endpoint": endpoint,
            "state": (p.state if p.state in ("up", "degraded", "probation") else "up")
            if p.up
            else "down",
            "enabled": enabled,
            "rate_bps": p.rate_bps,
            "download_bps": p.download_bps,
            "metric": p.metric,
            "datagrams_sent": p.datagrams_sent,
            "bytes_sent": p.bytes_sent,
            "datagrams_received": p.datagrams_received,
            "bytes_received": p.bytes_received,
            "delivered": p.delivered,
            "lost": p.lost,
            "loss_rate": _finite(p.loss_rate),
            "srtt": _finite(p.srtt),
            "min_rtt": _finite(p.min_rtt),
            "rttvar": _finite(p.rttvar),
            "jitter": _finite(p.jitter),
            "congestion": p.congestion,
            "pacing_rate_bps": int(p.pacing_rate * 8),
            "estimated_rate_bps": int(p.btl_bw * 8),
            "cwnd_bytes": int(p.cwnd),
            "inflight_bytes": p.inflight,
            "queued_bytes": p.queued_bytes,
            "standby": p.standby,
            "estimate_restarts": p.estimate_restarts,
            "reprobes": p.reprobes,
            "fill_bytes": p.fill_bytes,
        }

    def path(self, key: str, path_id: int) -> dict[str, Any]:
        """One path of a session; 404 if unknown."""
        entry = self.session(key)
        for path in entry["paths"]:
            if path["path_id"] == path_id:
                return dict(path)
        raise ServiceError(404, f"session {key} path {path_id}: no such path")

    def statistics(self) -> dict[str, Any]:
        """The whole statistics document (the `--stats` file's shape), with path names."""
        stats = self.portal.statistics()
        names = self.path_names()
        if names:
            stats = dataclasses.replace(stats, path_names=names)
        return statistics_document(stats, uptime=max(0.0, self._clock() - self.started))

    def policies(self) -> dict[str, Any]:
        """The run-time policies: scheduler (and the valid ones) and each link's settings."""
        from braid.core.scheduler import SCHEDULERS

        config = self.portal.session_config
        parameters: dict[str, Any] = {}
        classes: list[Any] = []
        for item in dataclasses.fields(config):
            value = getattr(config, item.name)
            if item.name == "classes":
                classes = [_plain(c) for c in value]
            elif isinstance(value, bool | int | str) or value is None:
                parameters[item.name] = value
            elif isinstance(value, float):
                parameters[item.name] = _finite(value)
        return {
            "scheduler": config.scheduler,
            "schedulers": list(SCHEDULERS),
            "keepalive_interval": config.keepalive_interval,
            "dead_interval": config.dead_interval,
            "parameters": parameters,
            "classes": classes,
            "links": self.links() if isinstance(self.portal, LocalPortal) else [],
        }

    def links(self) -> list[dict[str, Any]]:
        """Local portal: the links (enabled and disabled) with their settings."""
        portal = self.portal
        if not isinstance(portal, LocalPortal):
            return []
        up: dict[int, bool] = {}
        for session in self._live_sessions().values():
            up = {p.path_id: p.up for p in session.statistics().paths}
        out = []
        for link, enabled in self._all_links():
            out.append(
                {
                    "name": link.name,
                    "path_id": link.path_id,
                    "enabled": enabled,
                    "state": "disabled"
                    if not enabled
                    else ("up" if up.get(link.path_id) else "down"),
                    "endpoint": _endpoint_pair(link.endpoint),
                    "rate_bps": link.rate_bps,
                    "download_bps": link.download_bps,
                    "metric": link.metric,
                }
            )
        return out

    def _all_links(self) -> Iterator[tuple[PathLink, bool]]:
        assert isinstance(self.portal, LocalPortal)
        items = [(link, True) for link in self.portal.links]
        items += [(link, False) for link in self._disabled.values()]
        yield from sorted(items, key=lambda item: item[0].path_id)

    # -- writes ----------------------------------------------------------------------

    def set_scheduler(self, name: str, *, session: str | None = None) -> dict[str, Any]:
        """Switch the scheduler of one session, or of every session and of new ones."""
        from braid.core.scheduler import SCHEDULERS

        if name not in SCHEDULERS:
            raise ServiceError(
                422, f"scheduler: {name!r} is unknown; expected one of {', '.join(SCHEDULERS)}"
            )
        if session is not None:
            _core(self._session(session)).set_scheduler(name)
            return self.session(session)
        portal = self.portal
        portal.session_config = dataclasses.replace(portal.session_config, scheduler=name)
        server = getattr(portal, "_server", None)  # the remote's handshake answerer makes sessions
        if server is not None and hasattr(server, "session_config"):
            server.session_config = portal.session_config
        for live in self._live_sessions().values():
            _core(live).set_scheduler(name)
        return self.policies()

    def check_class(self, class_name: str, scheduler: str | None = None) -> None:
        """404 unless a traffic class of that name is configured; 422 for a bad scheduler."""
        from braid.core.scheduler import SCHEDULERS

        known = [c.name for c in self.portal.session_config.classes]
        if class_name not in known:
            raise ServiceError(
                404,
                f"classes.{class_name}: no such traffic class; configured:"
                f" {', '.join(known) or 'none ([[class]] tables in the config)'}",
            )
        if scheduler is not None and scheduler not in SCHEDULERS:
            raise ServiceError(
                422,
                f"classes.{class_name}.scheduler: {scheduler!r} is unknown;"
                f" expected one of {', '.join(SCHEDULERS)} or null",
            )

    def set_class_scheduler(
        self, class_name: str, name: str | None, *, session: str | None = None
    ) -> None:
        """Switch a traffic class's scheduler (None: follow the session's) at run time."""
        self.check_class(class_name, name)
        config = self.portal.session_config
        if session is not None:
            _core(self._session(session)).set_class_scheduler(class_name, name)
            return
        classes = tuple(
            dataclasses.replace(c, scheduler=name) if c.name == class_name else c
            for c in config.classes
        )
        portal = self.portal
        portal.session_config = dataclasses.replace(config, classes=classes)
        server = getattr(portal, "_server", None)
        if server is not None and hasattr(server, "session_config"):
            server.session_config = portal.session_config
        for live in self._live_sessions().values():
            _core(live).set_class_scheduler(class_name, name)

    def set_parameters(self, values: dict[str, Any], *, session: str | None = None) -> None:
        """Change run-time session parameters (thresholds) of one session, or of all and new.

        Values must be within RUNTIME_PARAMETERS (422 otherwise); a combination the
        session refuses (e.g. dead_interval not above keepalive_interval) is 409.
        """
        for name, value in values.items():
            bounds = RUNTIME_PARAMETERS.get(name)
            if bounds is None:
                raise ServiceError(
                    422,
                    f"parameters.{name}: not changeable at run time; expected one of"
                    f" {', '.join(RUNTIME_PARAMETERS)}",
                )
            low, high, kind = bounds
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or (kind is int and not isinstance(value, int))
                or not low <= value <= high
            ):
                raise ServiceError(
                    422, f"parameters.{name}: {value!r} is invalid; expected {low:g}..{high:g}"
                )
        targets = (
            [self._session(session)]
            if session is not None
            else list(self._live_sessions().values())
        )
        configs = [_core(t).config for t in targets]
        if session is None:
            configs.append(self.portal.session_config)
        try:
            updated = [dataclasses.replace(c, **values) for c in configs]
        except ValueError as exc:
            raise ServiceError(409, f"parameters: {exc}") from None
        for config in updated:
            if config.dead_interval <= config.keepalive_interval:
                raise ServiceError(
                    409,
                    f"parameters: dead_interval ({config.dead_interval:g}) must be above"
                    f" keepalive_interval ({config.keepalive_interval:g})",
                )
        remake = any(name in values for name in _SCHEDULER_PARAMETERS)
        for target, config in zip(targets, updated, strict=False):
            inner = _core(target)
            inner.config = config
            if remake:
                inner.set_scheduler(inner.scheduler)
        if session is None:
            portal = self.portal
            portal.session_config = updated[-1]
            server = getattr(portal, "_server", None)
            if server is not None and hasattr(server, "session_config"):
                server.session_config = portal.session_config

    def update_path(
        self,
        key: str,
        path_id: int,
        *,
        metric: int | None = None,
        rate_bps: int | None = None,
        clear_rate: bool = False,
        enabled: bool | None = None,
        download_bps: int | None = None,
        clear_download: bool = False,
    ) -> dict[str, Any]:
        """Change a session path's metric and/or rate hint (and, locally, its download rate
        hint, and enable/disable it)."""
        session = self._session(key)
        if isinstance(self.portal, LocalPortal) and (
            path_id in self._disabled or path_id in session.path_ids()
        ):
            name = self.path_names().get(path_id, str(path_id))
            self.update_link(
                name,
                metric=metric,
                rate_bps=rate_bps,
                clear_rate=clear_rate,
                enabled=enabled,
                download_bps=download_bps,
                clear_download=clear_download,
            )
            return self.path(key, path_id)
        if path_id not in session.path_ids():
            raise ServiceError(404, f"session {key} path {path_id}: no such path")
        if enabled is not None:
            raise ServiceError(
                409, "enabled: links are enabled and disabled on the local portal only"
            )
        if download_bps is not None or clear_download:
            raise ServiceError(
                409,
                "download_bps: set on the local portal's link (this portal's sending rate"
                " hint is rate_bps)",
            )
        self._apply_update(session, path_id, metric, rate_bps, clear_rate)
        return self.path(key, path_id)

    def _apply_update(
        self,
        session: Session,
        path_id: int,
        metric: int | None,
        rate_bps: int | None,
        clear_rate: bool,
        download_bps: int | None = None,
        clear_download: bool = False,
    ) -> None:
        kwargs: dict[str, Any] = {}
        if metric is not None:
            kwargs["metric"] = metric
        if clear_rate:
            kwargs["rate_bps"] = None
        elif rate_bps is not None:
            kwargs["rate_bps"] = rate_bps
        if clear_download:
            kwargs["download_bps"] = None
        elif download_bps is not None:
            kwargs["download_bps"] = download_bps
        if not kwargs:
            return
        try:
            _core(session).update_path(path_id, now=self._now(), **kwargs)
        except ValueError as exc:
            raise ServiceError(422, str(exc)) from None

    def remove_path(self, key: str, path_id: int) -> None:
        """Stop using a session path (on the local portal: remove its link)."""
        session = self._session(key)
        if isinstance(self.portal, LocalPortal):
            name = self.path_names().get(path_id)
            if name is None:
                raise ServiceError(404, f"session {key} path {path_id}: no such path")
            self.remove_link(name)
            return
        if path_id not in session.path_ids():
            raise ServiceError(404, f"session {key} path {path_id}: no such path")
        session.remove_path(path_id, now=self._now())
        self._flush(session)

    def close_session(self, key: str) -> None:
        """End a session (CLOSE sent on its paths); a local portal starts a new one."""
        session = self._session(key)
        session.close(now=self._now())
        self._flush(session)

    # -- links (local portal) --------------------------------------------------------

    def _local(self) -> LocalPortal:
        portal = self.portal
        if not isinstance(portal, LocalPortal):
            raise ServiceError(
                409,
                "links: only a local portal has links; on the remote portal change a"
                " session's paths (/api/v1/sessions/{session_id}/paths/{path_id})",
            )
        return portal

    def _find_link(self, name: str) -> tuple[PathLink, bool]:
        for link, enabled in self._all_links():
            if link.name == name:
                return link, enabled
        raise ServiceError(404, f"link {name!r}: no such link; see GET /api/v1/links")

    def link(self, name: str) -> dict[str, Any]:
        """One link by name; 404 if unknown."""
        self._local()
        for entry in self.links():
            if entry["name"] == name:
                return entry
        raise ServiceError(404, f"link {name!r}: no such link; see GET /api/v1/links")

    def update_link(
        self,
        name: str,
        *,
        metric: int | None = None,
        rate_bps: int | None = None,
        clear_rate: bool = False,
        enabled: bool | None = None,
        download_bps: int | None = None,
        clear_download: bool = False,
    ) -> dict[str, Any]:
        """Change a link's metric / rate hints, enable or disable it; applied at once (the
        remote portal learns the metric and download rate: PATH_INFO)."""
        portal = self._local()
        link, is_enabled = self._find_link(name)
        _check_params(metric, rate_bps)
        _check_params(None, download_bps, "download_bps")
        new = dataclasses.replace(
            link,
            metric=link.metric if metric is None else metric,
            rate_bps=None if clear_rate else (link.rate_bps if rate_bps is None else rate_bps),
            download_bps=None
            if clear_download
            else (link.download_bps if download_bps is None else download_bps),
        )
        session = self._live_sessions().get(portal.session.session_id) if portal.running else None
        if is_enabled:
            portal.links = tuple(new if x.path_id == link.path_id else x for x in portal.links)
            if session is not None and link.path_id in session.path_ids():
                self._apply_update(
                    session,
                    link.path_id,
                    metric,
                    rate_bps,
                    clear_rate,
                    download_bps,
                    clear_download,
                )
        else:
            self._disabled[link.path_id] = new
        if enabled is False and is_enabled:
            if len(portal.links) == 1:
                raise ServiceError(409, f"link {name!r}: cannot disable the last enabled link")
            portal.links = tuple(x for x in portal.links if x.path_id != link.path_id)
            self._disabled[link.path_id] = new
            if session is not None and link.path_id in session.path_ids():
                session.remove_path(link.path_id, now=self._now())
                self._flush(session)
        elif enabled is True and not is_enabled:
            del self._disabled[link.path_id]
            portal.links = tuple(sorted((*portal.links, new), key=lambda x: x.path_id))
            if session is not None:
                session.add_path(
                    new.path_id,
                    rate_bps=new.rate_bps,
                    metric=new.metric,
                    download_bps=new.download_bps,
                    now=self._now(),
                )
                self._flush(session)
        return self.link(name)

    def add_link(self, spec: LinkSpec) -> dict[str, Any]:
        """Open a new link's socket and add it as a path of the session (local portal)."""
        portal = self._local()
        _check_name(spec.name)
        _check_params(spec.metric, spec.rate_bps)
        _check_params(None, spec.download_bps, "download_bps")
        if any(link.name == spec.name for link, _ in self._all_links()):
            raise ServiceError(409, f"link {spec.name!r}: already exists; choose another name")
        used = {link.path_id for link, _ in self._all_links()}
        path_id = next((i for i in range(MAX_PATH_ID + 1) if i not in used), None)
        if path_id is None:
            raise ServiceError(409, "links: no free path id (at most 256 links)")
        if self._open_endpoint is None:
            raise ServiceError(409, "links: this portal cannot open new link sockets")
        from braid.io.base import DriverError

        try:
            endpoint = self._open_endpoint(
                remote=spec.remote, interface=spec.interface, source=spec.source, link=spec.name
            )
        except (DriverError, OSError, ValueError) as exc:
            raise ServiceError(422, f"link {spec.name!r}: cannot open its socket: {exc}") from None
        link = PathLink(
            path_id=path_id,
            name=spec.name,
            endpoint=endpoint,
            rate_bps=spec.rate_bps,
            metric=spec.metric,
            download_bps=spec.download_bps,
        )
        portal.links = tuple(sorted((*portal.links, link), key=lambda x: x.path_id))
        portal._sockets[path_id] = endpoint
        portal._names[path_id] = spec.name
        if portal.running:
            portal._add_reader(endpoint.fileno(), portal._make_reader(endpoint))
            session = portal.session
            if not session.closed:
                session.add_path(
                    path_id,
                    rate_bps=spec.rate_bps,
                    metric=spec.metric,
                    download_bps=spec.download_bps,
                    now=self._now(),
                )
                self._flush(session)
        return self.link(spec.name)

    def remove_link(self, name: str) -> None:
        """Remove a link: its path leaves the session and its socket is closed."""
        portal = self._local()
        link, enabled = self._find_link(name)
        if enabled and len(portal.links) == 1:
            raise ServiceError(409, f"link {name!r}: cannot remove the last enabled link")
        if enabled:
            portal.links = tuple(x for x in portal.links if x.path_id != link.path_id)
            session = portal.session if portal.running else None
            if session is not None and link.path_id in session.path_ids():
                session.remove_path(link.path_id, now=self._now())
                self._flush(session)
        else:
            del self._disabled[link.path_id]
        portal._sockets.pop(link.path_id, None)
        portal._names.pop(link.path_id, None)
        fd = link.endpoint.fileno()
        if fd in portal._readers:
            portal._readers.remove(fd)
            with contextlib.suppress(Exception):
                portal.loop.remove_reader(fd)
        link.endpoint.close()


def _plain(value: Any) -> Any:
    """A dataclass / tuple / scalar as JSON-ready data (non-finite floats become None)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return _finite(value)
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)


def _check_name(name: str) -> None:
    import re

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}", name):
        raise ServiceError(
            422,
            f"name: {name!r} is not a link name; expected 1..32 letters, digits, '_', '.', '-'",
        )


def _check_params(metric: int | None, rate_bps: int | None, name: str = "rate_bps") -> None:
    if metric is not None and not 0 <= metric <= 65535:
        raise ServiceError(422, f"metric: {metric} is out of range; expected 0..65535")
    if rate_bps is not None and not 1000 <= rate_bps <= 10**12:
        raise ServiceError(
            422, f"{name}: {rate_bps} is out of range; expected 1000..1000000000000 bits/s"
        )


def _peer_of(endpoint: DatagramEndpoint) -> str | None:
    try:
        getpeername = getattr(endpoint, "getpeername", None)
        return _address_text(getpeername()) if getpeername is not None else None
    except (OSError, ValueError):
        return None


def _endpoint_pair(endpoint: DatagramEndpoint) -> str | None:
    try:
        local = _address_text(endpoint.getsockname())
    except (OSError, AttributeError, ValueError):
        local = None
    peer = _peer_of(endpoint)
    if local and peer:
        return f"{local} -> {peer}"
    return peer or local


def _disabled_entry(path_id: int, link: PathLink, endpoint: str | None) -> dict[str, Any]:
    return {
        "path_id": path_id,
        "name": link.name,
        "endpoint": endpoint or _endpoint_pair(link.endpoint),
        "state": "disabled",
        "enabled": False,
        "rate_bps": link.rate_bps,
        "download_bps": link.download_bps,
        "metric": link.metric,
        "datagrams_sent": 0,
        "bytes_sent": 0,
        "datagrams_received": 0,
        "bytes_received": 0,
        "delivered": 0,
        "lost": 0,
        "loss_rate": None,
        "srtt": None,
        "min_rtt": None,
        "rttvar": None,
        "jitter": None,
        "congestion": "",
        "pacing_rate_bps": 0,
        "estimated_rate_bps": 0,
        "cwnd_bytes": 0,
        "inflight_bytes": 0,
        "queued_bytes": 0,
        "standby": False,
        "estimate_restarts": 0,
        "reprobes": 0,
        "fill_bytes": 0,
    }
