"""`braid up CONFIG`: turn a validated config into open drivers and a running portal.

The sockets are opened before the TUN device, so a bad link fails before anything
visible is created; whatever was opened before a failure is closed again.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

from braid.control.config import PortalConfig, format_rate
from braid.core.classify import mss_for_mtu
from braid.core.session import SessionConfig
from braid.core.wire import DATA_HEADER_SIZE
from braid.io.base import DatagramEndpoint
from braid.io.tcp import open_tcp_listener, open_tcp_path
from braid.io.tun import TunDevice, multiqueue_by_environment, offload_enabled_by_environment
from braid.io.udp import open_listen_socket, open_path_socket
from braid.runtime.daemon import run_portal
from braid.runtime.portal import LocalPortal, PathLink, RemotePortal


def _session_config(config: PortalConfig) -> SessionConfig:
    """The core's session settings; the largest datagram follows the TUN MTU (issue 7:
    each path's MTU is probed up to it), and so does the MSS TCP SYNs get (`clamp_mss`:
    the MTU less the 40 bytes of IPv4 and TCP headers)."""
    return dataclasses.replace(
        config.session.to_session_config(),
        max_datagram=config.tunnel.mtu + DATA_HEADER_SIZE,
        clamp_mss=mss_for_mtu(config.tunnel.mtu) if config.session.clamp_mss else 0,
    )


def open_local(config: PortalConfig) -> LocalPortal:
    """Open one pinned socket per link and the TUN; the (unstarted) local portal."""
    links: list[PathLink] = []
    try:
        for i, link in enumerate(config.links):
            opener = open_tcp_path if link.transport == "tcp" else open_path_socket
            reopen = functools.partial(
                opener,
                remote=link.remote,
                interface=link.interface,
                source=link.source,
                link=link.name,
            )
            endpoint = reopen()
            links.append(
                PathLink(
                    path_id=i,
                    name=link.name,
                    endpoint=endpoint,
                    rate_bps=link.rate_bps,
                    metric=link.metric,
                    standby=link.standby,
                    download_bps=link.download_bps,
                    interface=link.interface,
                    reopen=reopen,
                )
            )
        tun = _open_tun(config)
    except BaseException:
        for opened in links:
            opened.endpoint.close()
        raise
    assert config.security is not None  # the validator always sets it
    return LocalPortal(tun, links, session_config=_session_config(config), security=config.security)


def _open_tun(config: PortalConfig) -> TunDevice:
    """The portal's TUN device (with IFF_VNET_HDR unless BRAID_TUN_OFFLOAD=0; multi-queue
    with BRAID_TUN_MULTIQUEUE=1, an experiment)."""
    t = config.tunnel
    return TunDevice.open(
        t.name,
        mtu=t.mtu,
        addresses=t.addresses,
        routes=t.routes,
        vnet_hdr=offload_enabled_by_environment(),
        multi_queue=multiqueue_by_environment(),
    )


def open_remote(config: PortalConfig) -> RemotePortal:
    """Open the listening socket and the TUN; the (unstarted) remote portal."""
    if config.listen is None:
        raise ValueError("a remote portal config needs [listen]")
    endpoint: DatagramEndpoint = open_listen_socket(config.listen.address, config.listen.port)
    listener = None
    try:
        if config.listen.tcp:
            listener = open_tcp_listener(config.listen.address, config.listen.port)
        tun = _open_tun(config)
    except BaseException:
        endpoint.close()
        if listener is not None:
            listener.close()
        raise
    assert config.security is not None  # the validator always sets it
    portal = RemotePortal(
        tun, endpoint, session_config=_session_config(config), security=config.security
    )
    portal.tcp_listener = listener
    return portal


def start_line(portal: LocalPortal | RemotePortal, config: PortalConfig) -> str:
    """The one log line describing a started portal: tunnel, session and paths."""
    t = config.tunnel
    head = (
        f"{config.role} portal: tunnel {portal.tun.name}"
        f" {', '.join(str(a) for a in t.addresses)} mtu {t.mtu}"
    )
    if t.routes:
        head += f", routes {', '.join(str(r) for r in t.routes)}"
    head += f", scheduler {config.session.scheduler}"
    if isinstance(portal, LocalPortal):
        paths = []
        for link in config.links:
            pin = ", ".join(
                p
                for p in (
                    link.interface and f"dev {link.interface}",
                    link.source and f"src {link.source}",
                )
                if p
            )
            rate = f", {format_rate(link.rate_bps)}" if link.rate_bps else ""
            metric = f", metric {link.metric}" if link.metric else ""
            paths.append(f"{link.name} ({pin}{rate}{metric}) -> {link.remote_text}")
        listing = "; ".join(f"{i}={p}" for i, p in enumerate(paths))
        return f"{head}; session {portal.session.session_id:08x}; paths {listing}"
    assert config.listen is not None
    la = config.listen.address
    return f"{head}; listening on {'[' + la + ']' if ':' in la else la}:{config.listen.port}/udp"


def up(
    config: PortalConfig,
    *,
    stats_path: str | Path | None = None,
    stats_interval: float = 1.0,
) -> int:
    """Run the portal `config` describes until SIGINT/SIGTERM; 0 on a clean stop.

    Raises `DriverError` if a device or socket cannot be set up (nothing is left behind).
    """
    from braid.runtime.routing import Routing

    portal: LocalPortal | RemotePortal = (
        open_local(config) if config.role == "local" else open_remote(config)
    )
    routing = Routing.from_config(config)
    try:
        routing.apply()  # after the TUN exists; removed once the portal is closed
    except BaseException:
        portal.close()
        raise
    api = None
    if config.api is not None:
        from braid.runtime.daemon import ApiSettings

        api = ApiSettings(
            address=config.api.address,
            port=config.api.port,
            token=config.api.token,
            open_endpoint=open_path_socket,
        )
    try:
        return run_portal(
            portal,
            describe=lambda: start_line(portal, config),
            stats_path=stats_path,
            stats_interval=stats_interval,
            api=api,
            gap_trace=config.session.gap_trace,
        )
    finally:
        routing.remove()
