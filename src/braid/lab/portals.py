"""The two braid portals of a lab, run as real ``braid up`` processes from config files.

The local portal gets one [[link]] per lab link (pinned to ``wanK`` and ``10.100.K.2``); the
remote portal listens on every link address. The scenario's [braid] table becomes both
portals' [session] table, except ``gap_trace``: two processes must never append to one
file, so each portal gets its own, the role added to the name (``role_trace_path``:
``t.jsonl`` -> ``t-local.jsonl`` and ``t-remote.jsonl``). ``start`` returns once both print
``braid: up`` and a ping from the client reaches the server through the tunnel.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from braid.core.keys import encode_key, generate_private_key, public_key
from braid.lab.emulator import LinkShape
from braid.lab.netns import LabError, ns_cmd, python_cmd, run
from braid.lab.topology import (
    CLIENT_LAN,
    CLIENT_LAN6,
    SERVER_IP,
    SERVER_LAN,
    SERVER_LAN6,
    Topology,
)

TUNNEL_NAME = "braid0"
LOCAL_TUNNEL = "10.99.0.1/30"
REMOTE_TUNNEL = "10.99.0.2/30"
TUNNEL_MTU = 1400
PORT = 7100
UP_MARKER = "braid: up"
LOCAL_TUNNEL_HOST = "10.99.0.1/32"
LOCAL_TUNNEL6 = "fd00:99::1/126"
REMOTE_TUNNEL6 = "fd00:99::2/126"
LOCAL_TUNNEL6_HOST = "fd00:99::1/128"


@dataclass(frozen=True)
class PortalKeys:
    """Static key pairs of the two portals, in the text form of ``braid genkey/pubkey``."""

    local_private: str
    local_public: str
    remote_private: str
    remote_public: str

    @classmethod
    def generate(cls) -> PortalKeys:
        """Two fresh key pairs (one lab run's worth)."""
        local = generate_private_key(os.urandom)
        remote = generate_private_key(os.urandom)
        return cls(
            local_private=encode_key(local),
            local_public=encode_key(public_key(local)),
            remote_private=encode_key(remote),
            remote_public=encode_key(public_key(remote)),
        )


def toml_value(value: Any) -> str:
    """A scalar, list or table as TOML (a table inline; enough for portal configs)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} as TOML")


ROLES = ("local", "remote")


def role_trace_path(path: str | Path, role: str) -> Path:
    """The gap trace file of one portal: the role added to the name, before the suffix
    (``DIR/rec-loss-1.jsonl`` -> ``DIR/rec-loss-1-remote.jsonl``)."""
    if role not in ROLES:
        raise ValueError(f"role {role!r}: expected one of {', '.join(ROLES)}")
    path = Path(path)
    return path.with_name(f"{path.stem}-{role}{path.suffix}")


def role_session(session: dict[str, Any], role: str) -> dict[str, Any]:
    """One portal's [session] table: the shared settings, with ``gap_trace`` (if set) made
    that portal's own file (``role_trace_path``)."""
    trace = session.get("gap_trace")
    if trace is None:
        return dict(session)
    return {**session, "gap_trace": str(role_trace_path(str(trace), role))}


def _session_table(session: dict[str, Any]) -> list[str]:
    if not session:
        return []
    return ["", "[session]", *(f"{key} = {toml_value(value)}" for key, value in session.items())]


def class_tables(classes: list[dict[str, Any]] | tuple[dict[str, Any], ...]) -> list[str]:
    """[[class]] tables (a scenario's, the same for both portals) as config lines."""
    lines: list[str] = []
    for table in classes:
        lines += [
            "",
            "[[class]]",
            *(f"{key} = {toml_value(value)}" for key, value in table.items()),
        ]
    return lines


def local_config(
    topology: Topology,
    shapes: list[LinkShape],
    session: dict[str, Any],
    keys: PortalKeys,
    *,
    pin_source: bool = True,
    transports: list[str] | None = None,
    outer6: list[bool] | None = None,
    port: int = PORT,
    classes: list[dict[str, Any]] | tuple[dict[str, Any], ...] = (),
    rate_hints: bool = True,
) -> str:
    """The local portal's config: one link per lab link, the remote portal as its peer.

    `session` is the shared [session] table (a ``gap_trace`` becomes the local portal's
    own file, see ``role_session``). With an IPv6 topology the tunnel carries IPv6 too;
    `outer6[K-1]` puts link K's path on IPv6. Each link gets its rates (`rate`,
    `download`) unless not `rate_hints`."""
    lines = [
        'role = "local"',
        f"private_key = {toml_value(keys.local_private)}",
        "",
        "[tunnel]",
        f"name = {toml_value(TUNNEL_NAME)}",
        f"address = {toml_value([LOCAL_TUNNEL, LOCAL_TUNNEL6] if topology.ipv6 else LOCAL_TUNNEL)}",
        f"mtu = {TUNNEL_MTU}",
        f"routes = {toml_value([SERVER_LAN, SERVER_LAN6] if topology.ipv6 else [SERVER_LAN])}",
        *_session_table(role_session(session, "local")),
        *class_tables(classes),
    ]
    for link, shape in zip(topology.links, shapes, strict=True):
        v6 = bool(outer6 and outer6[link.index - 1])
        local_ip = link.local_ip6 if v6 else link.local_ip
        remote = f"[{link.remote_ip6}]:{port}" if v6 else f"{link.remote_ip}:{port}"
        lines += [
            "",
            "[[link]]",
            f"name = {toml_value(f'l{link.index}')}",
            f"interface = {toml_value(link.local_if)}",
            *([f"source = {toml_value(local_ip)}"] if pin_source else []),
            *(
                [f"transport = {toml_value(transports[link.index - 1])}"]
                if transports and transports[link.index - 1] != "udp"
                else []
            ),
            f"remote = {toml_value(remote)}",
        ]
        if rate_hints:
            lines += [
                f"rate = {toml_value(f'{int(shape.rate_up_bps)}bit')}",
                f"download = {toml_value(f'{int(shape.rate_down_bps)}bit')}",
            ]
    lines += ["", "[[peer]]", 'name = "remote"', f"public_key = {toml_value(keys.remote_public)}"]
    return "\n".join(lines) + "\n"


def remote_config(
    session: dict[str, Any],
    keys: PortalKeys,
    *,
    tcp: bool = False,
    ipv6: bool = False,
    port: int = PORT,
    classes: list[dict[str, Any]] | tuple[dict[str, Any], ...] = (),
) -> str:
    """The remote portal's config: listen on every address, the local portal as its peer
    (a ``gap_trace`` in `session` becomes the remote portal's own file)."""
    lines = [
        'role = "remote"',
        f"private_key = {toml_value(keys.remote_private)}",
        "",
        "[tunnel]",
        f"name = {toml_value(TUNNEL_NAME)}",
        f"address = {toml_value([REMOTE_TUNNEL, REMOTE_TUNNEL6] if ipv6 else REMOTE_TUNNEL)}",
        f"mtu = {TUNNEL_MTU}",
        f"routes = {toml_value([CLIENT_LAN, CLIENT_LAN6] if ipv6 else [CLIENT_LAN])}",
        *_session_table(role_session(session, "remote")),
        *class_tables(classes),
        "",
        "[listen]",
        f"address = {toml_value('::' if ipv6 else '0.0.0.0')}",
        f"port = {port}",
        *(["tcp = true"] if tcp else []),
        "",
        "[[peer]]",
        'name = "site"',
        f"public_key = {toml_value(keys.local_public)}",
        "allowed_ips = "
        + toml_value(
            [CLIENT_LAN, LOCAL_TUNNEL_HOST, CLIENT_LAN6, LOCAL_TUNNEL6_HOST]
            if ipv6
            else [CLIENT_LAN, LOCAL_TUNNEL_HOST]
        ),
    ]
    return "\n".join(lines) + "\n"


class Portals:
    """Both portals of a lab as ``braid up`` processes; a context manager."""

    def __init__(
        self,
        topology: Topology,
        shapes: list[LinkShape],
        session: dict[str, Any] | None = None,
        *,
        timeout: float = 15.0,
        pin_source: bool = True,
        transports: list[str] | None = None,
        outer6: list[bool] | None = None,
        stats_dir: Path | None = None,
        port: int = PORT,
        label: str = "",
        classes: list[dict[str, Any]] | tuple[dict[str, Any], ...] = (),
        rate_hints: bool = True,
    ) -> None:
        self.topology = topology
        self.rate_hints = rate_hints
        """Whether the local portal's config gives each link's rates."""
        self.classes = tuple(classes)
        """[[class]] tables written into both portals' configs."""
        self.port = port
        """The remote portal's UDP (and TCP) port."""
        self.label = label
        """Added to the names of the config and log files (several pairs in one lab)."""
        self.outer6 = outer6
        """Per link: its path over IPv6 (an IPv6 topology only)."""
        self.pin_source = pin_source
        """False: links are pinned by interface only (they follow its address)."""
        self.transports = transports
        """Per link "udp" (the default) or "tcp"."""
        env_stats = os.environ.get("BRAID_LAB_STATS")
        self.stats_dir = stats_dir or (Path(env_stats) if env_stats else None)
        """Each portal writes its statistics here every 0.25 s (`local.jsonl`,
        `remote.jsonl`); default: $BRAID_LAB_STATS, else none."""
        self.shapes = shapes
        self.session = dict(session or {})
        self.timeout = timeout
        self.local_path = topology.file(f"local{label}.toml")
        self.remote_path = topology.file(f"remote{label}.toml")
        self._procs: dict[str, subprocess.Popen[str]] = {}
        self.exit_codes: dict[str, int] = {}

    def __enter__(self) -> Portals:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log(self, role: str) -> Path:
        """The file holding a portal's stderr."""
        return self.topology.file(f"{role}{self.label}-portal.log")

    def start(self) -> None:
        """Write the configs, start both portals, wait for ``braid: up`` and a first ping."""
        topo = self.topology
        keys = PortalKeys.generate()
        for path, text in (
            (
                self.local_path,
                local_config(
                    topo,
                    self.shapes,
                    self.session,
                    keys,
                    pin_source=self.pin_source,
                    transports=self.transports,
                    outer6=self.outer6,
                    port=self.port,
                    classes=self.classes,
                    rate_hints=self.rate_hints,
                ),
            ),
            (
                self.remote_path,
                remote_config(
                    self.session,
                    keys,
                    tcp="tcp" in (self.transports or []),
                    ipv6=topo.ipv6,
                    port=self.port,
                    classes=self.classes,
                ),
            ),
        ):
            path.touch(mode=0o600)
            path.chmod(0o600)  # it holds a private key
            path.write_text(text)
        for role in ("remote", "local"):
            self._spawn(role)
        deadline = time.monotonic() + self.timeout
        for role in ("remote", "local"):
            self._wait_up(role, deadline)
        self.wait_tunnel(max(1.0, deadline - time.monotonic()))

    def _spawn(self, role: str) -> None:
        topo = self.topology
        ns, path = (
            (topo.remote, self.remote_path) if role == "remote" else (topo.local, self.local_path)
        )
        argv = ["up", str(path)]
        if self.stats_dir is not None:  # each portal's statistics every 0.25 s, JSON lines
            stats = self.stats_dir / f"{role}{self.label}.jsonl"
            argv += ["--stats", str(stats), "--stats-interval", "0.25"]
        with open(self.log(role), "w") as log:
            self._procs[role] = topo.spawn(
                ns, python_cmd("braid", *argv), stdout=log, stderr=subprocess.STDOUT
            )

    def kill(self, role: str) -> None:
        """Kill one portal with SIGKILL (a crash: nothing is cleaned up or said to the peer)."""
        proc = self._procs[role]
        proc.kill()
        proc.wait()
        self.exit_codes[role] = proc.returncode
        ns = self.topology.local if role == "local" else self.topology.remote
        run(["ip", "-n", ns, "link", "del", TUNNEL_NAME], check=False)

    def restart(self, role: str) -> None:
        """Start a killed portal again from the same config; returns once it says it is up
        (the session with its peer is not waited for)."""
        self._spawn(role)
        self._wait_up(role, time.monotonic() + self.timeout)

    def _wait_up(self, role: str, deadline: float) -> None:
        proc = self._procs[role]
        while time.monotonic() < deadline:
            text = self.log(role).read_text(errors="replace")
            if UP_MARKER in text:
                return
            if proc.poll() is not None:
                raise LabError(f"the {role} portal exited ({proc.returncode}): {_last_line(text)}")
            time.sleep(0.05)
        raise LabError(f"the {role} portal did not print '{UP_MARKER}' in {self.timeout:g} s")

    def wait_tunnel(self, timeout: float) -> None:
        """Wait until the client reaches the server through the tunnel."""
        argv = python_cmd(
            "braid.lab.ping",
            SERVER_IP,
            "--interval",
            "0.1",
            "--duration",
            f"{timeout:g}",
            "--wait",
            "0.5",
            "--until-reply",
        )
        result = subprocess.run(
            ns_cmd(self.topology.client, argv), capture_output=True, text=True, timeout=timeout + 10
        )
        if result.returncode != 0:
            for role, proc in self._procs.items():
                if proc.poll() is not None:
                    text = self.log(role).read_text(errors="replace")
                    raise LabError(f"the {role} portal exited: {_last_line(text)}")
            raise LabError(
                f"no ping through the tunnel within {timeout:.0f} s (see {self.log('local')})"
            )

    def pids(self) -> dict[str, int]:
        """The portals' pids by role ("local", "remote")."""
        return {role: proc.pid for role, proc in self._procs.items()}

    def alive(self) -> bool:
        """True while both portals run."""
        return bool(self._procs) and all(p.poll() is None for p in self._procs.values())

    def stop(self) -> None:
        """Stop both portals (SIGTERM: they remove their TUN devices) and keep exit codes."""
        for role in ("local", "remote"):
            proc = self._procs.pop(role, None)
            if proc is None:
                continue
            self.topology.stop(proc, grace=5.0)
            self.exit_codes[role] = proc.returncode
        # A portal killed by force leaves its device behind; the namespace removal takes it.
        for ns in (self.topology.local, self.topology.remote):
            run(["ip", "-n", ns, "link", "del", TUNNEL_NAME], check=False)


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"
