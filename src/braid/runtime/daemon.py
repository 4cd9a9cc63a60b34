"""Run a portal on an event loop until SIGINT/SIGTERM (the body of `braid up`).

The portal's drivers are already open (see `braid.control.up`). This starts the
portal on a fresh event loop (uvloop when importable), then the REST API (with the
dashboard and /metrics) on the same loop when configured, logs the start line and
`up`, waits for a signal, then stops the API, closes the portal (CLOSE datagrams
flushed, TUN removed, sockets closed) and returns 0. The portal is closed however the
loop ends; an API that cannot listen is a `DriverError` (one line) before `up`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from braid.io.base import DriverError
from braid.runtime.portal import LocalPortal, RemotePortal
from braid.runtime.stats import StatsWriter

log = logging.getLogger("braid.runtime")

#: How many unexpected errors inside loop callbacks are logged before going quiet.
MAX_LOGGED_LOOP_ERRORS = 20


@dataclass(frozen=True, slots=True)
class ApiSettings:
    """Where and how to serve the control API (`[api]`)."""

    address: str
    port: int
    token: str
    open_endpoint: Callable[..., Any] | None = None
    """Opens the socket of a link added at run time (`open_path_socket`)."""


LOOP_ENV = "BRAID_EVENT_LOOP"
"""Environment switch: ``BRAID_EVENT_LOOP=asyncio`` runs the portal on asyncio's own loop
instead of uvloop (for the before/after measurement in docs/performance.md)."""


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop's loop factory when importable (unless BRAID_EVENT_LOOP=asyncio), else asyncio's."""
    if os.environ.get(LOOP_ENV, "").strip().lower() == "asyncio":
        return asyncio.new_event_loop
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.new_event_loop
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run_portal(
    portal: LocalPortal | RemotePortal,
    *,
    describe: Callable[[], str] | None = None,
    stats_path: str | Path | None = None,
    stats_interval: float = 1.0,
    api: ApiSettings | None = None,
    gap_trace: str | Path | None = None,
) -> int:
    """Serve `portal` until SIGINT/SIGTERM; 0 on a clean stop. The portal ends closed.

    `describe()` gives the start line, called once the portal has started. With
    `gap_trace`, the sessions' egress gap samples are appended to that file (JSON lines).
    """
    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            return runner.run(_serve(portal, describe, stats_path, stats_interval, api, gap_trace))
    finally:
        portal.close()  # idempotent; covers an exception inside the loop


async def _serve(
    portal: LocalPortal | RemotePortal,
    describe: Callable[[], str] | None,
    stats_path: str | Path | None,
    stats_interval: float,
    api: ApiSettings | None = None,
    gap_trace: str | Path | None = None,
) -> int:
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(_ExceptionLogger())
    stop = asyncio.Event()
    received: list[int] = []

    def on_signal(signum: int) -> None:
        received.append(signum)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    portal.start()
    writer = StatsWriter(portal, stats_path, interval=stats_interval) if stats_path else None
    tracer = asyncio.create_task(_write_gap_trace(portal, Path(gap_trace))) if gap_trace else None
    server: Any = None
    try:
        if api is not None:
            server = await _start_api(portal, api)
        if writer is not None:
            writer.start()
        if describe is not None:
            log.info("%s", describe())
        log.info("up")
        await stop.wait()
        log.info("stopping (%s)", signal.Signals(received[0]).name if received else "stop")
    finally:
        if server is not None:
            await server.stop()
        if tracer is not None:
            tracer.cancel()
            _flush_gap_trace(portal, Path(gap_trace or ""))
        portal.close()
        if writer is not None:
            writer.stop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    log.info("down")
    return 0


def _flush_gap_trace(portal: LocalPortal | RemotePortal, path: Path) -> None:
    """Append the sessions' new gap samples to `path` (issue 7: `braid train` input)."""
    sessions = (
        list(portal.sessions.values()) if isinstance(portal, RemotePortal) else [portal.session]
    )
    lines = []
    for session in sessions:
        for x, label in session.take_gap_trace():
            lines.append(json.dumps({"x": [round(v, 5) for v in x], "y": label}))
    if lines:
        with path.open("a") as out:
            out.write("\n".join(lines) + "\n")


async def _write_gap_trace(portal: LocalPortal | RemotePortal, path: Path) -> None:
    while True:
        await asyncio.sleep(1.0)
        try:
            _flush_gap_trace(portal, path)
        except (OSError, RuntimeError) as exc:
            log.warning("gap trace: %s", exc)
            return


async def _start_api(portal: LocalPortal | RemotePortal, settings: ApiSettings) -> Any:
    """Serve the control API on this loop; DriverError (one line) if it cannot listen."""
    from braid.control.api import Api, ApiServer
    from braid.control.service import PortalService

    service = PortalService(portal, open_endpoint=settings.open_endpoint)
    server = ApiServer(
        Api(service, token=settings.token), host=settings.address, port=settings.port
    )
    try:
        await server.start()
    except OSError as exc:
        raise DriverError(
            f"api: cannot listen on {server.url}: {exc.strerror or exc}; change [api] listen/port"
        ) from None
    log.info("api on %s/ (dashboard), %s/metrics", server.url, server.url)
    if not ipaddress.ip_address(settings.address).is_loopback:
        log.warning("api: listening beyond loopback (%s); protect the token", settings.address)
    return server


class _ExceptionLogger:
    """Loop exception handler: one line per unexpected error (never a traceback)."""

    def __init__(self) -> None:
        self.seen = 0

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        self.seen += 1
        if self.seen > MAX_LOGGED_LOOP_ERRORS:
            return
        exc = context.get("exception")
        what = f"{type(exc).__name__}: {exc}" if exc is not None else context.get("message", "")
        log.error("internal error (continuing): %s", what)
        if exc is not None:
            log.debug("details", exc_info=exc)
