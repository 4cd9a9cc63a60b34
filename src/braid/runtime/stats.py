"""Periodic statistics as JSON (`braid up --stats FILE`), for the lab, tests and humans.

The file is replaced atomically (write to a temporary file, then rename), so a
reader never sees half a document; a file named `*.jsonl` instead gets one compact
line appended per snapshot (a time series). Its shape is `PortalStatistics` as JSON plus
`time` (Unix seconds) and `uptime` (seconds); each local path gains its `name`.
Non-finite floats become null so the document is strict JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Protocol

from braid.runtime.portal import PortalStatistics

log = logging.getLogger("braid.runtime")


class _HasStatistics(Protocol):
    def statistics(self) -> PortalStatistics: ...


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def statistics_document(stats: PortalStatistics, *, uptime: float | None = None) -> dict[str, Any]:
    """`stats` as a JSON-ready dict (what the stats file holds)."""
    doc: dict[str, Any] = dataclasses.asdict(stats)
    names = doc.pop("path_names", {}) or {}
    for session in doc["sessions"]:
        for path in session["paths"]:
            name = names.get(path["path_id"])
            if name is not None:
                path["name"] = name
    doc = {"time": time.time(), "uptime": uptime, **doc}
    cleaned: dict[str, Any] = _clean(doc)
    return cleaned


def write_statistics(path: Path, document: dict[str, Any]) -> None:
    """Atomically replace `path` with `document` as JSON (append a line to `*.jsonl`)."""
    if path.suffix == ".jsonl":
        with path.open("a") as out:
            out.write(json.dumps(document, separators=(",", ":")) + "\n")
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(document, indent=1, sort_keys=False) + "\n")
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


class StatsWriter:
    """Writes a portal's statistics to a file every `interval` seconds, and once at stop."""

    def __init__(self, portal: _HasStatistics, path: str | Path, *, interval: float = 1.0) -> None:
        self.portal = portal
        self.path = Path(path)
        self.interval = interval
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = 0.0
        self.errors = 0

    def start(self) -> None:
        """Write now, then every `interval` on the running loop."""
        self._loop = asyncio.get_running_loop()
        self._started = self._loop.time()
        self._tick()

    def write(self) -> None:
        """Write one snapshot now (errors are counted, never raised)."""
        uptime = self._loop.time() - self._started if self._loop is not None else None
        try:
            write_statistics(
                self.path, statistics_document(self.portal.statistics(), uptime=uptime)
            )
        except OSError as exc:
            self.errors += 1
            if self.errors == 1:
                log.warning("cannot write statistics to %s: %s", self.path, exc.strerror or exc)

    def _tick(self) -> None:
        self.write()
        if self._loop is not None:
            self._handle = self._loop.call_later(self.interval, self._tick)

    def stop(self) -> None:
        """Stop the periodic writes and write a final snapshot."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self.write()
        self._loop = None
