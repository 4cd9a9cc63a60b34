"""1000 idle sessions on a real ``braid up`` remote portal: its resident memory (issue 9).

    sudo .venv/bin/python bench/bench_sessions.py [--sessions 1000] [--paths 2] [--json FILE]

A namespace ``bbench-<pid>-mem`` (loopback only) holds a ``braid up`` remote portal with
``--sessions`` ``[[peer]]`` tables, listening on 127.0.0.1. A client process in the same
namespace runs one ``SecureSession`` initiator per peer (the local portal's core, no TUN),
each path on its own UDP socket, and keeps them all alive (keepalive probes and replies)
while the portal's RSS is read from /proc: once with no session, then with every session
established, and again after ``--idle`` seconds of idling. Everything is torn down in
``finally`` (also on Ctrl-C).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_core

from braid.core.keys import encode_key, generate_private_key, public_key
from braid.core.secure import PeerSpec, SecureConfig, SecureSession
from braid.core.session import SessionConfig, TunnelSession
from braid.lab.netns import add_netns, del_netns, ns_cmd, python_cmd

PORT = 7100
UP_MARKER = "braid: up"


def site_prefix(index: int) -> str:
    return f"10.{64 + index // 250}.{index % 250}.0/24"


def remote_config(server_key: bytes, keys: list[bytes]) -> str:
    lines = [
        'role = "remote"',
        f'private_key = "{encode_key(server_key)}"',
        "",
        "[tunnel]",
        'name = "bmem0"',
        'address = "10.63.0.1/16"',
        'routes = ["10.64.0.0/10"]',
        "",
        "[listen]",
        'address = "127.0.0.1"',
        f"port = {PORT}",
    ]
    for i, key in enumerate(keys):
        lines += [
            "",
            "[[peer]]",
            f'name = "site{i}"',
            f'public_key = "{encode_key(public_key(key))}"',
            f'allowed_ips = ["{site_prefix(i)}"]',
        ]
    return "\n".join(lines) + "\n"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no VmRSS for process {pid}")


# -- the client (runs inside the namespace) ------------------------------------------------


def client(workdir: Path, sessions: int, paths: int, idle: float, portal_pid: int) -> int:
    """Establish `sessions` sessions with the portal, keep them alive, report RSS as JSON."""
    keys = [bytes.fromhex(h) for h in json.loads((workdir / "keys.json").read_text())]
    server_public = bytes.fromhex((workdir / "server.pub").read_text().strip())
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = sessions * paths + 64
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            raise SystemExit(f"needs {need} open files; the limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    rng = os.urandom
    config = SessionConfig()
    selector = selectors.DefaultSelector()
    sites: list[tuple[SecureSession, list[socket.socket]]] = []
    target = ("127.0.0.1", PORT)
    clock = time.monotonic
    result: dict[str, Any] = {"portal RSS, no session (MiB)": rss_mib(portal_pid)}

    def pump(site: tuple[SecureSession, list[socket.socket]], now: float) -> None:
        session, socks = site
        session.handle_timer(now=now)
        for path_id, data in session.datagrams_to_send(now=now):
            socks[path_id].sendto(data, target)
        while session.next_event() is not None:
            pass

    def drain(now: float) -> None:
        for key, _ in selector.select(timeout=0):
            sock, index = key.fileobj, key.data
            site = sites[index]
            while True:
                try:
                    data = sock.recv(2048)  # type: ignore[union-attr]
                except BlockingIOError:
                    break
                site[0].receive_datagram(data, now=now)
            pump(site, now)

    def due(now: float) -> None:
        for site in sites:
            timer = site[0].get_timer()
            if timer is not None and timer <= now:
                pump(site, now)

    started = clock()
    for i, key in enumerate(keys):
        now = clock()
        inner = TunnelSession(config, role="local", session_id=0x1000_0000 + i, now=now)
        session = SecureSession.initiator(
            inner,
            SecureConfig(private_key=key, peers=(PeerSpec(server_public),)),
            rng=rng,
            now=now,
            wall_clock=time.time,
        )
        socks = []
        for path_id in range(paths):
            session.add_path(path_id, now=now)
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            # one address per site (the portal rate-limits handshakes per source address)
            sock.bind((f"127.1.{i // 250}.{1 + i % 250}", 0))
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ, len(sites))
            socks.append(sock)
        sites.append((session, socks))
        pump(sites[-1], now)
        # a few ms between handshakes (a burst puts the portal's gate under load: cookies)
        until = clock() + 0.004
        while clock() < until:
            drain(clock())
            due(clock())
    deadline = clock() + 60
    while clock() < deadline:
        now = clock()
        drain(now)
        due(now)
        established = sum(1 for s, _ in sites if s.established)
        if established == sessions and all(
            all(p.up for p in s.statistics().paths) for s, _ in sites
        ):
            break
        time.sleep(0.002)
    result["sessions established"] = sum(1 for s, _ in sites if s.established)
    result["paths up (client side)"] = sum(
        sum(1 for p in s.statistics().paths if p.up) for s, _ in sites
    )
    result["setup (s)"] = round(clock() - started, 1)
    result["portal RSS, all sessions up (MiB)"] = rss_mib(portal_pid)
    end = clock() + idle
    readings = []
    mark = clock() + 5
    while clock() < end:
        now = clock()
        drain(now)
        due(now)
        if now >= mark:
            readings.append(rss_mib(portal_pid))
            mark += 5
        time.sleep(0.005)
    result["portal RSS every 5 s while idle (MiB)"] = readings
    result["portal RSS, after idling (MiB)"] = rss_mib(portal_pid)
    result["idle (s)"] = idle
    result["paths up after idling (client side)"] = sum(
        sum(1 for p in s.statistics().paths if p.up) for s, _ in sites
    )
    # the portal's own view, while the sessions are still alive (written every second)
    until = clock() + 1.5
    while clock() < until:
        drain(clock())
        due(clock())
        time.sleep(0.005)
    doc = json.loads((workdir / "remote.json").read_text())
    live = [s for s in doc["sessions"] if not s["closed"]]
    result["sessions on the portal"] = len(live)
    result["paths up on the portal"] = sum(sum(1 for p in s["paths"] if p["up"]) for s in live)
    print(json.dumps(result))
    return 0


# -- the driver ----------------------------------------------------------------------------


def measure(sessions: int, paths: int, idle: float) -> dict[str, Any]:
    ns = f"bbench-{os.getpid()}-mem"
    workdir = Path(tempfile.mkdtemp(prefix="braid-bench-sessions-"))
    portal: subprocess.Popen[bytes] | None = None
    add_netns(ns)
    try:
        rng = os.urandom
        server_key = generate_private_key(rng)
        keys = [generate_private_key(rng) for _ in range(sessions)]
        (workdir / "keys.json").write_text(json.dumps([k.hex() for k in keys]))
        (workdir / "server.pub").write_text(public_key(server_key).hex())
        config = workdir / "remote.toml"
        config.write_text(remote_config(server_key, keys))
        config.chmod(0o600)
        stats = workdir / "remote.json"
        log = workdir / "remote.log"
        with log.open("w") as out:
            portal = subprocess.Popen(
                ns_cmd(ns, python_cmd("braid", "up", str(config), "--stats", str(stats))),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while UP_MARKER not in log.read_text(errors="replace"):
            if portal.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the portal did not start: {log.read_text()[-300:]}")
            time.sleep(0.05)
        time.sleep(1.0)  # settled (imports done, first stats written)
        # `ip netns exec` runs the portal as a child of this Popen: find the python
        pid = int(
            subprocess.run(
                ["pgrep", "-f", "-n", f"braid up {config}"], capture_output=True, text=True
            ).stdout.split()[0]
        )
        client = [sys.executable, __file__, "--client", str(workdir), "--portal-pid", str(pid)]
        sizes = ["--sessions", str(sessions), "--paths", str(paths), "--idle", str(idle)]
        result = bench_core.child_json(ns_cmd(ns, [*client, *sizes]), timeout=600)
        growth = result["portal RSS, after idling (MiB)"] - result["portal RSS, no session (MiB)"]
        result["growth per session (KiB)"] = round(growth * 1024 / max(1, sessions), 1)
        return result
    finally:
        if portal is not None and portal.poll() is None:
            portal.send_signal(signal.SIGTERM)
            try:
                portal.wait(timeout=10)
            except subprocess.TimeoutExpired:
                portal.kill()
        del_netns(ns)
        for path in workdir.iterdir():
            path.unlink()
        workdir.rmdir()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--paths", type=int, default=2)
    parser.add_argument(
        "--idle", type=float, default=10.0, help="seconds idle before the last reading"
    )
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--client", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--portal-pid", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client is not None:
        return client(args.client, args.sessions, args.paths, args.idle, args.portal_pid)
    if os.geteuid() != 0:
        print("bench_sessions: needs root (a network namespace)", file=sys.stderr)
        return 2
    result = measure(args.sessions, args.paths, args.idle)
    for key, value in result.items():
        print(f"{key:40s} {value}")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
