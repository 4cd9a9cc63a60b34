"""The portals: asyncio drivers of secure sessions over a packet device and datagram sockets.

```
 local portal                                    remote portal
 TUN --read batch--> session.send_packet          socket --recvfrom batch--> SecureServer
 sockets[path] --recv batch--> receive_datagram     (handshakes -> replies to the source;
   (SecureSession: handshake, open, inner v1)        transport -> its session: open, inner v1;
   flush: datagrams_to_send (sealed)                  learn (session, path) -> source address
            -> sockets[path].send                     only from an accepted datagram)
          packets_to_deliver -> TUN.write          TUN --read batch--> session owning the dst
          next_event -> log / new session            flush: sendto(learned address), TUN.write,
          get_timer -> one loop.call_at                     learn inner sources, events, timer
```

Every session is a `braid.core.secure.SecureSession` (wire version 3: Noise IKpsk2
handshake, every datagram sealed; docs/security.md) around a `TunnelSession`; the local
portal initiates, the remote portal's `SecureServer` answers only authenticated
initiations and creates a session per handshake.

Rules every input follows (the session contract): read `now = loop.time()` once per
wakeup (the runtime is the only clock reader), feed a batch of inputs (up to `batch`
packets, until EAGAIN), then flush once: drain datagrams, deliveries and events, and
re-arm the session's single timer at `get_timer()` with `loop.call_at`. Nothing ever
blocks the loop: a datagram a full socket refuses, or a packet the TUN refuses, is
dropped and counted. The portal's counters are plain ints; `statistics()` snapshots
them with every session's own statistics.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from braid.core.secure import SecureConfig, SecureServer, SecureSession, SessionOpened
from braid.core.session import (
    PathDown,
    PathUp,
    SessionClosed,
    SessionConfig,
    SessionStatistics,
    TunnelSession,
)
from braid.io.base import MAX_DATAGRAM_BYTES, Address, DatagramEndpoint, DriverError, PacketDevice
from braid.io.ifwatch import InterfaceWatcher, interface_addresses, interface_tx_dropped
from braid.io.tcp import FrameStream, StreamClosed, TcpAddress, TcpPathEndpoint
from braid.io.tun import (
    DEFAULT_TXQUEUELEN,
    EARLY_DROP_TXQUEUELEN,
    TunDevice,
    queue_length_for,
)
from braid.io.udp import SegmentReceiver, SegmentSender, gso_enabled_by_environment

log = logging.getLogger("braid.runtime")

TCP_RETRY = 1.0
"""Seconds before a TCP path whose connection ended connects again."""

REBIND_GRACE = 2.0
"""Seconds a rebound path's old UDP socket still receives (what was already on its way
to the old port is not lost), before it is closed."""

TUN_QUEUE_PERIOD = 1.0
"""Seconds between two sizings of the TUN queue to the sessions' rate (`queue_length_for`)."""

TIMER_SLACK = 0.001
"""Seconds after a session's deadline that its timer is armed for (see `_arm`)."""

#: Inputs handled per wakeup before the outputs are flushed (and other readers get a turn).
DEFAULT_BATCH = 64
#: The remote portal forgets a session after this long without a valid datagram.
DEFAULT_SESSION_IDLE_TIMEOUT = 30.0
#: The remote portal serves at most this many sessions at once.
DEFAULT_MAX_SESSIONS = 1024
#: The remote portal remembers at most this many inner source addresses (for routing).
MAX_LEARNED_ADDRESSES = 65536

Rng = Callable[[int], bytes]


@dataclass(frozen=True, slots=True)
class PathLink:
    """One path of a local portal: its id, its socket, and what the session should know."""

    path_id: int
    name: str
    endpoint: DatagramEndpoint
    rate_bps: int | None = None
    metric: int = 0
    standby: bool = False  # issue 5: bandwidth on demand
    download_bps: int | None = None
    """The link's download rate hint: told to the remote portal (PATH_INFO)."""
    interface: str | None = None
    """The interface the path is pinned to: its link and address events rebind the path."""
    reopen: Callable[[], DatagramEndpoint] | None = None
    """Opens the path's socket again (after the interface came back or changed address)."""


@dataclass(frozen=True, slots=True)
class PortalCounters:
    """Runtime counters of a portal (everything the sessions cannot see)."""

    tun_packets_read: int
    tun_packets_written: int
    tun_write_errors: int
    tun_pauses: int
    """Times the TUN was left unread because a session's queues were full (queue control)."""
    tun_kernel_drops: int
    """Packets the kernel dropped in front of the TUN (its queue was full: the portal paused
    or was late reading); kernel counter since the device was created."""
    send_rejected: int
    socket_send_errors: int
    socket_receive_errors: int
    datagrams_received: int
    malformed: int
    unknown_session: int
    unroutable: int
    sessions_created: int
    sessions_ended: int


@dataclass(frozen=True, slots=True)
class PortalStatistics:
    """A snapshot of a portal: its counters and each session's statistics."""

    role: Literal["local", "remote"]
    tunnel: str
    counters: PortalCounters
    sessions: tuple[SessionStatistics, ...]
    path_names: dict[int, str]
    security: dict[str, int] = field(default_factory=dict)
    """Handshakes answered/completed and datagrams dropped by the security layer."""
    tun_queue_length: int = 0
    """Packets the kernel may queue for the TUN now (`txqueuelen`; 0: not a real TUN)."""


def _source_on(endpoint: DatagramEndpoint, interface: str) -> bool:
    """Whether `endpoint`'s source address is one `interface` has (now)."""
    try:
        local = str(endpoint.getsockname()[0])
        address = str(ipaddress.ip_address(local.split("%")[0]))
    except (OSError, ValueError):
        return False
    return address in interface_addresses(interface)


class _Driven:
    """One session and the I/O state the runtime keeps for it."""

    __slots__ = ("addresses", "deadline", "session", "sources", "timer")

    def __init__(self, session: SecureSession) -> None:
        self.session = session
        self.timer: asyncio.TimerHandle | None = None
        self.deadline: float | None = None
        self.addresses: dict[int, Address] = {}
        self.sources: set[bytes] = set()


class _Portal:
    """What both portals share: the TUN, the counters, flushing and the timer."""

    role: Literal["local", "remote"]

    def __init__(
        self,
        tun: PacketDevice,
        *,
        session_config: SessionConfig,
        batch: int = DEFAULT_BATCH,
    ) -> None:
        if batch < 1:
            raise ValueError("batch must be >= 1")
        self.tun = tun
        self.session_config = session_config
        self.batch = batch
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        self._readers: list[int] = []
        self.tun_packets_read = 0
        self.tun_packets_written = 0
        self.tun_write_errors = 0
        self.tun_pauses = 0
        self._tun_drops_seen = 0
        self.send_rejected = 0
        self.socket_send_errors = 0
        self.socket_receive_errors = 0
        self.datagrams_received = 0
        self.malformed = 0
        self.unknown_session = 0
        self.unroutable = 0
        self.sessions_created = 0
        self.sessions_ended = 0
        self._tun_paused = False  # issue 5: TUN backpressure (see _pause_tun)
        # Issue 9: runs of same-sized datagrams to one path leave in one UDP GSO send.
        self._segments = SegmentSender(enabled=gso_enabled_by_environment())

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the portal runs on (set by `start`)."""
        if self._loop is None:
            raise RuntimeError("portal not started")
        return self._loop

    @property
    def running(self) -> bool:
        """True between `start()` and `close()`."""
        return self._loop is not None and not self._closing

    def _drivens(self) -> list[_Driven]:
        raise NotImplementedError

    def _start_tun_sizing(self) -> None:
        if isinstance(self.tun, TunDevice):  # (not the tests' in-memory devices)
            self.loop.call_later(TUN_QUEUE_PERIOD, self._size_tun_queue)

    def _size_tun_queue(self) -> None:
        self._resize_tun_queue()
        if not self._closing:
            self.loop.call_later(TUN_QUEUE_PERIOD, self._size_tun_queue)

    def _resize_tun_queue(self) -> None:
        """The TUN queue holds `TXQUEUE_TIME` of the sessions' summed rate (issue 9), at
        least 1000 packets while every session's early drop is active, else the short
        default of queue control (issue 5: a path went down, or early drop is off);
        changed when off by a quarter. Called every `TUN_QUEUE_PERIOD` and when a path
        goes down or comes back."""
        tun = self.tun
        if self._closing or not isinstance(tun, TunDevice):
            return
        drivens = self._drivens()
        rate = sum(d.session.inner.capacity for d in drivens)
        early = bool(drivens) and all(
            getattr(d.session, "early_drop_active", False) for d in drivens
        )
        wanted = queue_length_for(
            rate, floor=EARLY_DROP_TXQUEUELEN if early else DEFAULT_TXQUEUELEN
        )
        current = tun.txqueuelen
        if abs(wanted - current) * 4 > current and tun.set_txqueuelen(wanted):
            log.debug("TUN queue %d packets (sessions at %.0f Mbit/s)", wanted, rate * 8e-6)

    # -- TUN backpressure (issue 5): while a session's send queues are full
    # (`session.writable` is False) the TUN is not read, so the backlog stays in the kernel.

    def _pause_tun(self) -> None:
        if not self._tun_paused and not self._closing:
            self._tun_paused = True
            self.tun_pauses += 1
            self.loop.remove_reader(self.tun.fileno())

    def _tun_kernel_drops(self) -> int:
        tun = self.tun
        if not isinstance(tun, TunDevice):
            return 0
        dropped = interface_tx_dropped(tun.name)
        if dropped is not None:  # (else the device is gone: the last count stands)
            self._tun_drops_seen = dropped
        return self._tun_drops_seen

    def _resume_tun(self, driven: _Driven) -> None:
        if self._tun_paused and not self._closing and getattr(driven.session, "writable", True):
            self._tun_paused = False
            self.loop.add_reader(self.tun.fileno(), self._on_tun)

    def _on_tun(self) -> None:
        raise NotImplementedError

    def _add_reader(self, fd: int, callback: Callable[[], None]) -> None:
        self.loop.add_reader(fd, callback)
        self._readers.append(fd)

    def _rearm_reader(self, fd: int, callback: Callable[[], None]) -> None:
        """Register `fd`'s reader again after a socket error. uvloop stops polling a file
        descriptor that reported an error (e.g. ECONNREFUSED from an ICMP port
        unreachable while the peer portal restarts): without this the portal goes deaf."""
        if not self._closing and fd in self._readers:
            self.loop.remove_reader(fd)
            self.loop.add_reader(fd, callback)

    def _remove_readers(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            for fd in self._readers:
                loop.remove_reader(fd)
        self._readers.clear()

    @property
    def tun_queue_length(self) -> int:
        """Packets the kernel may queue for the TUN now (0: not a real TUN device)."""
        tun = self.tun
        return tun.txqueuelen if isinstance(tun, TunDevice) else 0

    def counters(self) -> PortalCounters:
        """A snapshot of the runtime counters."""
        return PortalCounters(
            tun_packets_read=self.tun_packets_read,
            tun_packets_written=self.tun_packets_written,
            tun_write_errors=self.tun_write_errors,
            tun_pauses=self.tun_pauses,
            tun_kernel_drops=self._tun_kernel_drops(),
            send_rejected=self.send_rejected,
            socket_send_errors=self.socket_send_errors,
            socket_receive_errors=self.socket_receive_errors,
            datagrams_received=self.datagrams_received,
            malformed=self.malformed,
            unknown_session=self.unknown_session,
            unroutable=self.unroutable,
            sessions_created=self.sessions_created,
            sessions_ended=self.sessions_ended,
        )

    # -- flushing -----------------------------------------------------------------------

    def _send(self, driven: _Driven, datagrams: list[tuple[int, bytes]]) -> None:
        raise NotImplementedError

    def _on_event(self, driven: _Driven, event: object) -> None:
        raise NotImplementedError

    def _deliver(self, driven: _Driven, packets: list[bytes]) -> None:
        tun = self.tun
        if isinstance(tun, TunDevice):  # joined TCP segments, GSO writes
            written, refused = tun.write_batch(packets)
            self.tun_write_errors += refused
            self.tun_packets_written += written
            return
        write = self.tun.write
        written = 0
        for packet in packets:
            try:
                write(packet)
                written += 1
            except OSError:
                self.tun_write_errors += 1
        self.tun_packets_written += written

    def _flush(self, driven: _Driven, now: float) -> None:
        """Drain the session's outputs and re-arm its timer (after every input)."""
        session = driven.session
        datagrams = session.datagrams_to_send(now=now)
        if datagrams:
            self._send(driven, datagrams)
        packets = session.packets_to_deliver()
        if packets:
            self._deliver(driven, packets)
        event = session.next_event()
        while event is not None:
            self._on_event(driven, event)
            event = session.next_event()
        self._arm(driven)
        if self._tun_paused:
            self._resume_tun(driven)

    def _arm(self, driven: _Driven) -> None:
        deadline = driven.session.get_timer()
        if deadline == driven.deadline and (deadline is None or driven.timer is not None):
            return
        if (
            driven.timer is not None
            and deadline is not None
            and driven.deadline is not None
            and driven.deadline <= deadline
        ):
            return  # an earlier wake-up is set; it re-arms (saves a timer per packet)
        if driven.timer is not None:
            driven.timer.cancel()
            driven.timer = None
        driven.deadline = deadline
        if deadline is not None and not self._closing:
            # uvloop's timers tick in milliseconds and may fire up to one early; a
            # wake-up before the deadline does nothing and re-arms at once (a busy loop
            # of sub-millisecond wake-ups while a pacer waits), so aim just after it.
            driven.timer = self.loop.call_at(deadline + TIMER_SLACK, self._on_timer, driven)

    def _on_timer(self, driven: _Driven) -> None:
        driven.timer = None
        driven.deadline = None
        if self._closing:
            return
        now = self.loop.time()
        driven.session.handle_timer(now=now)
        self._flush(driven, now)

    def _cancel_timer(self, driven: _Driven) -> None:
        if driven.timer is not None:
            driven.timer.cancel()
            driven.timer = None
        driven.deadline = None

    def _log_path(self, driven: _Driven, event: PathUp | PathDown) -> None:
        name = self._path_name(driven, event.path_id)
        if isinstance(event, PathUp):
            log.info("path %s up", name)
        else:
            log.info("path %s down (%s)", name, event.reason)

    def _path_name(self, driven: _Driven, path_id: int) -> str:
        return str(path_id)


class LocalPortal(_Portal):
    """The site's portal: one session with one path per link, a fresh random session id."""

    role: Literal["local", "remote"] = "local"

    def __init__(
        self,
        tun: PacketDevice,
        links: Sequence[PathLink],
        *,
        session_config: SessionConfig,
        security: SecureConfig,
        batch: int = DEFAULT_BATCH,
        rng: Rng = os.urandom,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(tun, session_config=session_config, batch=batch)
        self.security = security
        self._wall_clock = wall_clock
        if not links:
            raise ValueError("a local portal needs at least one link")
        ids = [link.path_id for link in links]
        if len(set(ids)) != len(ids):
            raise ValueError("path ids must be unique")
        self.links = tuple(links)
        self._rng = rng
        self._sockets: dict[int, DatagramEndpoint] = {link.path_id: link.endpoint for link in links}
        self._names = {link.path_id: link.name for link in links}
        self._driven: _Driven | None = None
        self._watcher: InterfaceWatcher | None = None
        self._retiring: list[DatagramEndpoint] = []  # rebound paths' old sockets
        self.interface_events = 0
        self.rebinds = 0

    def _drivens(self) -> list[_Driven]:
        return [self._driven] if self._driven is not None else []

    @property
    def session(self) -> SecureSession:
        """The current session."""
        if self._driven is None:
            raise RuntimeError("portal not started")
        return self._driven.session

    def start(self) -> None:
        """Start the session and begin reading the TUN and the path sockets."""
        self._loop = asyncio.get_running_loop()
        self._new_session(self._loop.time())
        self._add_reader(self.tun.fileno(), self._on_tun)
        self._start_tun_sizing()
        for link in self.links:
            self._add_reader(link.endpoint.fileno(), self._make_reader(link.endpoint))
        if any(link.interface and link.reopen for link in self.links):
            try:
                self._watcher = InterfaceWatcher()
            except DriverError as exc:
                log.warning("%s; paths follow their interfaces by silence only", exc)
            else:
                self._add_reader(self._watcher.fileno(), self._on_interfaces)

    def _on_interfaces(self) -> None:
        """Link and address events: a path whose interface went down is down at once; one
        whose interface came back or changed address gets a fresh socket and greets."""
        watcher = self._watcher
        driven = self._driven
        if watcher is None or driven is None or self._closing:
            return
        events = watcher.read_events()
        if not events:
            return
        now = self.loop.time()
        inner = driven.session.inner
        rebind: set[int] = set()
        for name, change in events:
            for link in self.links:
                if link.interface != name or link.reopen is None:
                    continue
                self.interface_events += 1
                if change == "down":
                    log.info(
                        "interface %s down: path %s", name, self._path_name(driven, link.path_id)
                    )
                    inner.link_down(link.path_id, now=now)
                    rebind.discard(link.path_id)
                elif change == "up" or not _source_on(self._sockets[link.path_id], link.interface):
                    # (An address event that leaves the path's own source address in
                    # place, e.g. an IPv6 link-local address after DAD or a DHCP renewal
                    # of the same lease, changes nothing for the path.)
                    rebind.add(link.path_id)
        for path_id in sorted(rebind):
            self._rebind(driven, path_id, now)
        self._flush(driven, now)

    def _stream_closed(self, endpoint: DatagramEndpoint) -> None:
        path_id = next((i for i, e in self._sockets.items() if e is endpoint), None)
        if path_id is None or self._closing:
            return
        fd = endpoint.fileno()
        if fd in self._readers:
            self.loop.remove_reader(fd)
            self._readers.remove(fd)
        self.socket_receive_errors += 1
        self.loop.call_later(TCP_RETRY, self._reconnect, path_id)

    def _reconnect(self, path_id: int) -> None:
        driven = self._driven
        if driven is None or self._closing:
            return
        now = self.loop.time()
        self._rebind(driven, path_id, now)
        self._flush(driven, now)

    def _rebind(self, driven: _Driven, path_id: int, now: float) -> None:
        link = next(link for link in self.links if link.path_id == path_id)
        assert link.reopen is not None
        try:
            endpoint = link.reopen()
        except DriverError as exc:  # e.g. the interface has no address yet: wait for one
            log.info("path %s: not rebound yet (%s)", self._path_name(driven, path_id), exc)
            return
        if (
            link.interface
            and not isinstance(endpoint, TcpPathEndpoint)
            and not _source_on(endpoint, link.interface)
        ):
            # The interface has no address of the path's family (a lease ended): the
            # kernel picked another interface's as the source, which would lead the peer
            # astray. Down until the next address event.
            endpoint.close()
            log.info(
                "path %s: interface %s has no address; down until it gets one",
                self._path_name(driven, path_id),
                link.interface,
            )
            driven.session.inner.link_down(path_id, now=now)
            return
        old = self._sockets[path_id]
        if isinstance(old, TcpPathEndpoint):
            self._close_endpoint(old)  # (a closed TCP path's fd may be -1: not a reader)
        else:
            self._retiring.append(old)
            self.loop.call_later(REBIND_GRACE, self._close_endpoint, old)
        self._sockets[path_id] = endpoint
        self._add_reader(endpoint.fileno(), self._make_reader(endpoint))
        self.rebinds += 1
        log.info(
            "path %s rebound (interface %s changed)",
            self._path_name(driven, path_id),
            link.interface,
        )
        driven.session.inner.path_rebound(path_id, now=now)

    def _close_endpoint(self, endpoint: DatagramEndpoint) -> None:
        if endpoint in self._retiring:
            self._retiring.remove(endpoint)
        fd = endpoint.fileno()
        if fd in self._readers:
            self.loop.remove_reader(fd)
            self._readers.remove(fd)
        endpoint.close()

    def _new_session(self, now: float) -> None:
        session_id = int.from_bytes(self._rng(4), "big")
        inner = TunnelSession(self.session_config, role="local", session_id=session_id, now=now)
        session = SecureSession.initiator(
            inner, self.security, rng=self._rng, now=now, wall_clock=self._wall_clock
        )
        for link in self.links:
            session.add_path(
                link.path_id,
                rate_bps=link.rate_bps,
                metric=link.metric,
                download_bps=link.download_bps,
                now=now,
            )
            if link.standby:  # issue 5: bandwidth on demand
                inner.update_path(link.path_id, standby=True, now=now)
        self.sessions_created += 1
        self._driven = driven = _Driven(session)
        self._flush(driven, now)

    def _make_reader(self, endpoint: DatagramEndpoint) -> Callable[[], None]:
        def on_readable() -> None:
            self._on_socket(endpoint)

        return on_readable

    def _on_tun(self) -> None:
        driven = self._driven
        if driven is None or self._closing:
            return
        now = self.loop.time()
        read = self.tun.read
        send_packet = driven.session.send_packet
        count = 0
        rejected = 0
        for _ in range(self.batch):
            if not getattr(driven.session, "writable", True):
                self._pause_tun()
                break
            try:
                packet = read()
            except BlockingIOError:
                break
            except OSError:
                break
            count += 1
            if not send_packet(packet, now=now):
                rejected += 1
        self.tun_packets_read += count
        self.send_rejected += rejected
        self._flush(driven, now)

    def _on_socket(self, endpoint: DatagramEndpoint) -> None:
        driven = self._driven
        if driven is None or self._closing:
            return
        clock = self.loop.time
        now = clock()
        recv = endpoint.recv
        receive = driven.session.receive_datagram
        count = 0
        for _ in range(self.batch):
            try:
                data = recv(MAX_DATAGRAM_BYTES)
            except BlockingIOError:
                break
            except StreamClosed:  # a TCP path's connection ended: connect again soon
                self._stream_closed(endpoint)
                break
            except OSError:
                # e.g. ECONNREFUSED: an ICMP error for an earlier datagram (the remote
                # portal is not up yet); reading it cleared it.
                self.socket_receive_errors += 1
                self._rearm_reader(endpoint.fileno(), self._make_reader(endpoint))
                continue
            count += 1
            # The clock read after the datagram came in, not at the batch's start: a
            # datagram that arrived while the ones before it were handled (or while this
            # process waited for a core) would otherwise look that much early, and one
            # such one-way delay or round trip, 33 ms short once in the lab, stays a
            # path's minimum for 10 s (its estimate then falls as if a queue stood).
            now = clock()
            receive(data, now=now)
        self.datagrams_received += count
        if self._driven is driven:
            self._flush(driven, now)

    def _send(self, driven: _Driven, datagrams: list[tuple[int, bytes]]) -> None:
        sockets = self._sockets
        errors = 0
        # In order per path; one GSO send per run of same-sized datagrams where enabled
        # (else, and on TCP paths, one send each). A failed send (full buffer, link down,
        # ICMP error) drops the datagram and is counted.
        for path_id, batch in _by_path(datagrams).items():
            errors += self._segments.send(sockets[path_id], batch)
        if errors:
            self.socket_send_errors += errors

    def _on_event(self, driven: _Driven, event: object) -> None:
        if isinstance(event, PathUp | PathDown):
            self._log_path(driven, event)
            self._resize_tun_queue()
        elif isinstance(event, SessionClosed):
            self.sessions_ended += 1
            self._cancel_timer(driven)
            if not self._closing and driven is self._driven:
                log.info(
                    "session %08x closed (%s); starting a new session",
                    driven.session.session_id,
                    event.reason,
                )
                # Scheduled, not nested: this flush is still draining the old session.
                self.loop.call_soon(self._restart, driven)

    def _restart(self, old: _Driven) -> None:
        if self._closing or old is not self._driven:
            return
        self._new_session(self.loop.time())

    def _path_name(self, driven: _Driven, path_id: int) -> str:
        name = self._names.get(path_id)
        return f"{path_id} ({name})" if name else str(path_id)

    def close(self) -> None:
        """Close the session (CLOSE on every path, flushed), stop reading, close the sockets.

        The TUN device is closed too. Idempotent.
        """
        if self._closing:
            return
        self._closing = True
        driven = self._driven
        if driven is not None and self._loop is not None and not self._loop.is_closed():
            now = self._loop.time()
            driven.session.close(now=now)
            self._flush(driven, now)
        if driven is not None:
            self._cancel_timer(driven)
        self._remove_readers()
        for endpoint in [*self._sockets.values(), *self._retiring]:
            endpoint.close()
        self._retiring.clear()
        if self._watcher is not None:
            self._watcher.close()
        self.tun.close()

    def statistics(self) -> PortalStatistics:
        """A snapshot of the portal and its session."""
        driven = self._driven
        sessions = (driven.session.statistics(),) if driven is not None else ()
        security: dict[str, int] = {}
        if driven is not None:
            sec = driven.session.security_statistics()
            security = {"handshakes": sec.handshakes_completed, "initiations": sec.initiations_sent}
            security.update(sec.drops)
        return PortalStatistics(
            role="local",
            tunnel=self.tun.name,
            counters=self.counters(),
            sessions=sessions,
            path_names=dict(self._names),
            security=security,
            tun_queue_length=self.tun_queue_length,
        )


def _by_path(datagrams: list[tuple[int, bytes]]) -> dict[int, list[bytes]]:
    """The datagrams grouped by path, in order within each path."""
    groups: dict[int, list[bytes]] = {}
    for path_id, data in datagrams:
        group = groups.get(path_id)
        if group is None:
            groups[path_id] = [data]
        else:
            group.append(data)
    return groups


def _inner_source(packet: bytes) -> bytes | None:
    version = packet[0] >> 4
    if version == 4:
        return packet[12:16] if len(packet) >= 20 else None
    if version == 6:
        return packet[8:24] if len(packet) >= 40 else None
    return None


def _inner_destination(packet: bytes) -> bytes | None:
    version = packet[0] >> 4
    if version == 4:
        return packet[16:20] if len(packet) >= 20 else None
    if version == 6:
        return packet[24:40] if len(packet) >= 40 else None
    return None


class RemotePortal(_Portal):
    """The server's portal: one listening socket, a session per local portal (by session id)."""

    role: Literal["local", "remote"] = "remote"

    def __init__(
        self,
        tun: PacketDevice,
        endpoint: DatagramEndpoint,
        *,
        session_config: SessionConfig,
        security: SecureConfig,
        batch: int = DEFAULT_BATCH,
        session_idle_timeout: float = DEFAULT_SESSION_IDLE_TIMEOUT,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        rng: Rng = os.urandom,
    ) -> None:
        if session_config.idle_timeout is None:
            from dataclasses import replace

            session_config = replace(session_config, idle_timeout=session_idle_timeout)
        super().__init__(tun, session_config=session_config, batch=batch)
        self.endpoint = endpoint
        self.max_sessions = max_sessions
        self.security = security
        self._rng = rng
        self._server: SecureServer | None = None
        self._sessions: dict[int, _Driven] = {}
        # Inner source address (packed) -> the session that last delivered a packet from it.
        self._routes: dict[bytes, _Driven] = {}
        # Issue 9: UDP GRO on the listening socket (set by `start` where it works).
        self._segment_receiver: SegmentReceiver | None = None
        self.tcp_listener: socket.socket | None = None
        """Accepts TCP paths (set before `start`; None: UDP only)."""
        self._streams: dict[TcpAddress, FrameStream] = {}

    def _drivens(self) -> list[_Driven]:
        return list(self._sessions.values())

    @property
    def sessions(self) -> dict[int, SecureSession]:
        """The live sessions by session id (a copy)."""
        return {sid: d.session for sid, d in self._sessions.items()}

    @property
    def server(self) -> SecureServer:
        """The security layer: identity, handshake gate, peers (set by `start`)."""
        if self._server is None:
            raise RuntimeError("portal not started")
        return self._server

    def start(self) -> None:
        """Begin reading the listening socket and the TUN."""
        self._loop = asyncio.get_running_loop()
        self._server = SecureServer(
            self.security,
            session_config=self.session_config,
            rng=self._rng,
            now=self._loop.time(),
            max_sessions=self.max_sessions,
        )
        if self._segments.enabled:
            self._segment_receiver = SegmentReceiver.enable(self.endpoint)
        self._start_tun_sizing()
        self._add_reader(self.endpoint.fileno(), self._on_socket)
        self._add_reader(self.tun.fileno(), self._on_tun)
        if self.tcp_listener is not None:
            self._add_reader(self.tcp_listener.fileno(), self._on_accept)

    # -- TCP paths --

    def _on_accept(self) -> None:
        listener = self.tcp_listener
        if listener is None or self._closing:
            return
        for _ in range(16):
            try:
                sock, peer = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.socket_receive_errors += 1
                self._rearm_reader(listener.fileno(), self._on_accept)
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            address = TcpAddress(str(peer[0]), int(peer[1]))
            stream = FrameStream(sock)
            self._streams[address] = stream
            self._add_reader(stream.fileno(), self._stream_reader(stream, address))

    def _stream_reader(self, stream: FrameStream, address: TcpAddress) -> Callable[[], None]:
        def on_readable() -> None:
            self._on_stream(stream, address)

        return on_readable

    def _on_stream(self, stream: FrameStream, address: TcpAddress) -> None:
        if self._closing:
            return
        try:
            frames = stream.read_frames()
        except StreamClosed:
            self._drop_stream(stream, address)
            return
        if frames:
            self._receive_batch([(frames, address)], self.loop.time())

    def _drop_stream(self, stream: FrameStream, address: TcpAddress) -> None:
        fd = stream.fileno()
        if fd in self._readers:
            self.loop.remove_reader(fd)
            self._readers.remove(fd)
        stream.close()
        if self._streams.get(address) is stream:
            del self._streams[address]

    def _on_socket(self) -> None:
        if self._closing:
            return
        recvfrom = self.endpoint.recvfrom
        receive_run = self._segment_receiver.receive if self._segment_receiver else None
        count = 0
        datagrams: Sequence[bytes]
        runs: list[tuple[Sequence[bytes], Address]] = []
        for _ in range(self.batch):
            try:
                if receive_run is None:
                    data, address = recvfrom(MAX_DATAGRAM_BYTES)
                    datagrams = (data,)
                else:
                    datagrams, address = receive_run()  # a coalesced run (UDP GRO)
            except BlockingIOError:
                break
            except OSError:
                self.socket_receive_errors += 1
                self._rearm_reader(self.endpoint.fileno(), self._on_socket)
                continue
            runs.append((datagrams, address))
            count += len(datagrams)
            if count >= self.batch:
                break  # a coalesced run counts as its datagrams: flush as often as without
        if runs:
            # (read once all of the batch is in: no datagram looks earlier than it came)
            self._receive_batch(runs, self.loop.time())

    def _receive_batch(self, runs: list[tuple[Sequence[bytes], Address]], now: float) -> None:
        """Feed received datagrams (with their source) to the server; flush what changed."""
        receive = self.server.receive_datagram
        sessions = self._sessions
        touched: dict[int, _Driven] = {}
        count = 0
        for datagrams, address in runs:
            for data in datagrams:
                count += 1
                result = receive(data, address, now=now)
                if result is None:
                    continue
                session, path_id = result
                session_id = session.session_id
                driven = sessions.get(session_id)
                if driven is None or driven.session is not session:
                    driven = self._adopt(session, now)
                if path_id is not None:
                    addresses = driven.addresses
                    if addresses.get(path_id) != address:
                        if path_id in addresses:
                            log.info(
                                "session %08x path %d moved to %s",
                                session_id,
                                path_id,
                                _format_address(address),
                            )
                        addresses[path_id] = address
                touched[session_id] = driven
        self.datagrams_received += count
        self._server_outputs(now)
        for driven in touched.values():
            self._flush(driven, now)

    def counters(self) -> PortalCounters:
        """The runtime counters; `malformed` and `unknown_session` come from the server."""
        if self._server is not None:
            drops = self._server.statistics().drops
            self.unknown_session = drops.get("unknown_session", 0)
            self.malformed = sum(drops.values()) - self.unknown_session
        return super().counters()

    def _server_outputs(self, now: float) -> None:
        """Send handshake replies; adopt the sessions handshakes opened, end replaced ones."""
        server = self.server
        replies = server.replies_to_send()
        if replies:
            sendto = self.endpoint.sendto
            for data, address in replies:
                try:
                    if isinstance(address, TcpAddress):
                        self._send_stream(address, data)
                    else:
                        sendto(data, address)
                except OSError:
                    self.socket_send_errors += 1
        event = server.next_event()
        while event is not None:
            self._on_opened(event, now)
            event = server.next_event()

    def _on_opened(self, event: SessionOpened, now: float) -> None:
        old = event.replaced
        if old is not None:
            previous = self._sessions.get(old.session_id)
            if previous is not None and previous.session is old:
                self._flush(previous, now)  # sends its CLOSE, ends it (SessionClosed)
                self._end_session(previous, "replaced")
        driven = self._sessions.get(event.session.session_id)
        if driven is None or driven.session is not event.session:
            driven = self._adopt(event.session, now)
        self._flush(driven, now)

    def _adopt(self, session: SecureSession, now: float) -> _Driven:
        stale = self._sessions.get(session.session_id)
        if stale is not None:
            self._end_session(stale, "replaced")
        driven = _Driven(session)
        self._sessions[session.session_id] = driven
        self.sessions_created += 1
        name = session.peer_name or "peer"
        log.info("session %08x with %s", session.session_id, name)
        return driven

    def _on_tun(self) -> None:
        if self._closing:
            return
        now = self.loop.time()
        read = self.tun.read
        sessions = self._sessions
        routes = self._routes
        touched: dict[int, _Driven] = {}
        count = 0
        rejected = 0
        unroutable = 0
        for _ in range(self.batch):
            try:
                packet = read()
            except BlockingIOError:
                break
            except OSError:
                break
            count += 1
            if len(sessions) == 1:
                driven = next(iter(sessions.values()))
            else:
                dst = _inner_destination(packet) if packet else None
                found = routes.get(dst) if dst is not None else None
                if found is None:
                    unroutable += 1
                    continue
                driven = found
            if not driven.session.send_packet(packet, now=now):
                rejected += 1
            touched[driven.session.session_id] = driven
            if not getattr(driven.session, "writable", True):
                self._pause_tun()
                break
        self.tun_packets_read += count
        self.send_rejected += rejected
        self.unroutable += unroutable
        for driven in touched.values():
            self._flush(driven, now)

    def _send_stream(self, address: TcpAddress, data: bytes) -> None:
        stream = self._streams.get(address)
        if stream is None:
            raise StreamClosed("the TCP path is gone")
        try:
            stream.send_frame(data)
        except StreamClosed:
            self._drop_stream(stream, address)
            raise

    def _send(self, driven: _Driven, datagrams: list[tuple[int, bytes]]) -> None:
        """Per path, in order: frames on its TCP connection, or its datagrams through the
        listening socket (one GSO send per run of equal sizes where enabled)."""
        addresses = driven.addresses
        errors = 0
        for path_id, batch in _by_path(datagrams).items():
            address = addresses.get(path_id)
            if address is None:
                errors += len(batch)
            elif type(address) is TcpAddress:
                for data in batch:
                    try:
                        self._send_stream(address, data)
                    except OSError:
                        errors += 1
            else:
                errors += self._segments.send(self.endpoint, batch, address)
        if errors:
            self.socket_send_errors += errors

    def _deliver(self, driven: _Driven, packets: list[bytes]) -> None:
        routes = self._routes
        for packet in packets:
            source = _inner_source(packet)
            if source is not None and routes.get(source) is not driven:
                self._learn(source, driven)
        super()._deliver(driven, packets)

    def _learn(self, source: bytes, driven: _Driven) -> None:
        routes = self._routes
        previous = routes.get(source)
        if previous is not None:
            previous.sources.discard(source)
        elif len(routes) >= MAX_LEARNED_ADDRESSES:
            return
        routes[source] = driven
        driven.sources.add(source)

    def _on_event(self, driven: _Driven, event: object) -> None:
        if isinstance(event, PathUp | PathDown):
            self._log_path(driven, event)
            self._resize_tun_queue()
        elif isinstance(event, SessionClosed):
            self._end_session(driven, event.reason)

    def _path_name(self, driven: _Driven, path_id: int) -> str:
        address = driven.addresses.get(path_id)
        where = f" from {_format_address(address)}" if address is not None else ""
        return f"{path_id} of session {driven.session.session_id:08x}{where}"

    def _end_session(self, driven: _Driven, reason: str) -> None:
        session_id = driven.session.session_id
        if self._server is not None:
            self._server.forget(driven.session)
        if self._sessions.get(session_id) is driven:
            del self._sessions[session_id]
            self.sessions_ended += 1
            if not self._closing:
                log.info("session %08x ended (%s)", session_id, reason)
        self._cancel_timer(driven)
        routes = self._routes
        for source in driven.sources:
            if routes.get(source) is driven:
                del routes[source]
        driven.sources.clear()

    def close(self) -> None:
        """Close every session (CLOSE flushed to each peer), stop reading, close socket and TUN.

        Idempotent.
        """
        if self._closing:
            return
        self._closing = True
        if self._loop is not None and not self._loop.is_closed():
            now = self._loop.time()
            for driven in list(self._sessions.values()):
                driven.session.close(now=now)
                self._flush(driven, now)
        for driven in list(self._sessions.values()):
            self._end_session(driven, "local")
        self._remove_readers()
        self.endpoint.close()
        for stream in self._streams.values():
            stream.close()
        self._streams.clear()
        if self.tcp_listener is not None:
            self.tcp_listener.close()
        self.tun.close()

    def statistics(self) -> PortalStatistics:
        """A snapshot of the portal and all its sessions."""
        security: dict[str, int] = {}
        if self._server is not None:
            server = self._server.statistics()
            security = {"handshakes": server.handshakes}
            security.update(server.drops)
        return PortalStatistics(
            role="remote",
            tunnel=self.tun.name,
            counters=self.counters(),
            sessions=tuple(d.session.statistics() for d in self._sessions.values()),
            path_names={},
            security=security,
            tun_queue_length=self.tun_queue_length,
        )


def _format_address(address: Address) -> str:
    try:
        host, port = address[0], address[1]
    except (TypeError, IndexError):
        return str(address)
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


Portal = LocalPortal | RemotePortal
