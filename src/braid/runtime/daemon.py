"""Run a portal on an event loop until SIGINT/SIGTERM (the body of `braid up`).

The portal's drivers are already open (see `braid.control.up`). This starts the
portal on a fresh event loop (uvloop when importable), logs the start line and
`up`, waits for a signal, then closes the portal (CLOSE datagrams flushed, TUN
removed, sockets closed) and returns 0. The portal is closed however the loop ends.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from braid.runtime.portal import LocalPortal, RemotePortal
from braid.runtime.stats import StatsWriter

log = logging.getLogger("braid.runtime")

#: How many unexpected errors inside loop callbacks are logged before going quiet.
MAX_LOGGED_LOOP_ERRORS = 20


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop's loop factory when importable, else asyncio's."""
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
) -> int:
    """Serve `portal` until SIGINT/SIGTERM; 0 on a clean stop. The portal ends closed.

    `describe()` gives the start line, called once the portal has started.
    """
    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            return runner.run(_serve(portal, describe, stats_path, stats_interval))
    finally:
        portal.close()  # idempotent; covers an exception inside the loop


async def _serve(
    portal: LocalPortal | RemotePortal,
    describe: Callable[[], str] | None,
    stats_path: str | Path | None,
    stats_interval: float,
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
    try:
        if writer is not None:
            writer.start()
        if describe is not None:
            log.info("%s", describe())
        log.info("up")
        await stop.wait()
        log.info("stopping (%s)", signal.Signals(received[0]).name if received else "stop")
    finally:
        portal.close()
        if writer is not None:
            writer.stop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    log.info("down")
    return 0


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
