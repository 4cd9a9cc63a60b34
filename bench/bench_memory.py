"""Memory held per session and per path, and by 1000 idle sessions on one remote portal.

    .venv/bin/python bench/bench_memory.py [--sessions 1000] [--paths 2] [--json FILE]

All in memory, no sockets (the portal's I/O state per session is one small ``_Driven``
object and one timer handle; the sessions' state is what grows):
- per session / per path: tracemalloc of ``--sessions`` idle ``TunnelSession`` objects
  (remote role) with 0, 1 and ``--paths`` paths, after their paths came up with a peer.
- remote portal: a ``SecureServer`` configured with ``--sessions`` peers completes a Noise
  handshake with each (one ``SecureSession`` initiator per peer, each on ``--paths`` paths
  from its own address), exchanges a few rounds of keepalives, then the initiators are
  dropped. Reported: the server's traced bytes per session, and the process's RSS growth
  (measured again in a fresh process without tracemalloc; RSS also holds the freed
  initiators' memory the allocator keeps, so it is an upper bound).
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import json
import os
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_core

from braid.core.keys import generate_private_key, public_key
from braid.core.secure import PeerSpec, SecureConfig, SecureServer, SecureSession
from braid.core.session import SessionConfig, TunnelSession

PORT = 7100


def rss_bytes() -> int:
    """This process's resident set size."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def traced() -> int:
    """Bytes currently traced by tracemalloc, after a full collection."""
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def session_sizes(count: int, paths: int) -> dict[str, float]:
    """Traced bytes of one idle remote TunnelSession with 0, 1 and ``paths`` paths."""
    config = SessionConfig()
    sizes = {}
    for n_paths in sorted({0, 1, paths}):
        keep = []
        base = traced()
        for i in range(count):
            remote = TunnelSession(config, role="remote", session_id=i + 1, now=0.0)
            if n_paths:
                local = TunnelSession(config, role="local", session_id=i + 1, now=0.0)
                for path_id in range(n_paths):
                    local.add_path(path_id, now=0.0)
                bench_core.exchange(local, remote, 0.0, rounds=6, step=0.01)
                del local
            keep.append(remote)
        sizes[n_paths] = (traced() - base) / count
        del keep
    result = {"session, no path (bytes)": sizes[0], "session, 1 path up (bytes)": sizes[1]}
    result["per path (bytes)"] = sizes[1] - sizes[0]
    if paths != 1:
        result[f"session, {paths} paths up (bytes)"] = sizes[paths]
        result["per path (bytes)"] = (sizes[paths] - sizes[0]) / paths
    return result


def remote_portal(count: int, paths: int) -> dict[str, float]:
    """A SecureServer with ``count`` established, idle sessions: traced bytes and RSS growth."""
    rng = os.urandom
    server_key = generate_private_key(rng)
    keys = [generate_private_key(rng) for _ in range(count)]
    specs = tuple(
        PeerSpec(
            public_key(key),
            allowed_ips=(ipaddress.ip_network(f"10.{64 + i // 250}.{i % 250}.0/24"),),
            name=f"site{i}",
        )
        for i, key in enumerate(keys)
    )
    session_config = SessionConfig()
    gc.collect()
    rss_before = rss_bytes()
    traced_before = traced()
    now = 0.0
    server = SecureServer(
        SecureConfig(private_key=server_key, peers=specs),
        session_config=session_config,
        rng=rng,
        now=now,
        max_sessions=count + 16,
    )
    traced_empty = traced()
    server_public = public_key(server_key)
    started = time.perf_counter()
    sites = []
    for i, key in enumerate(keys):
        inner = TunnelSession(session_config, role="local", session_id=i + 1, now=now)
        local = SecureSession.initiator(
            inner,
            SecureConfig(private_key=key, peers=(PeerSpec(server_public),)),
            rng=rng,
            now=now,
            wall_clock=lambda i=i: 1_700_000_000.0 + i,
        )
        for path_id in range(paths):
            local.add_path(path_id, now=now)
        addresses = {p: (f"192.0.{2 + p}.{1 + i % 250}", 40000 + i // 250) for p in range(paths)}
        sites.append((local, addresses))

    def exchange(local: SecureSession, addresses: dict[int, tuple[str, int]]) -> None:
        local.handle_timer(now=now)
        for path_id, data in local.datagrams_to_send(now=now):
            result = server.receive_datagram(data, addresses[path_id], now=now)
            if result is not None:
                for _path, reply in result[0].datagrams_to_send(now=now):
                    local.receive_datagram(reply, now=now)
        for reply, _address in server.replies_to_send():
            local.receive_datagram(reply, now=now)
        while server.next_event() is not None:
            pass
        while local.next_event() is not None:
            pass

    # Handshakes 20 ms apart (a burst would put the server's gate under load: cookies),
    # then keepalive rounds (the sessions' timers fire every 0.25 s), all in step.
    for local, addresses in sites:
        now += 0.02
        exchange(local, addresses)
    for _ in range(6):
        now += 0.3
        for local, addresses in sites:
            exchange(local, addresses)
    del sites, local
    elapsed = time.perf_counter() - started
    sessions = server.sessions
    established = sum(1 for s in sessions.values() if s.established)
    paths_up = sum(sum(1 for p in s.statistics().paths if p.up) for s in sessions.values())
    traced_full = traced()
    rss_after = rss_bytes()
    return {
        "sessions established": float(established),
        "paths up (all sessions)": float(paths_up),
        "server state, empty (bytes)": float(traced_empty - traced_before),
        "server state per idle session (bytes)": (traced_full - traced_empty) / max(1, count),
        "server state, all sessions (MiB)": (traced_full - traced_before) / 2**20,
        "process RSS growth, all sessions (MiB)": (rss_after - rss_before) / 2**20,
        "handshakes + setup per session (ms)": elapsed / count * 1e3,
        "process RSS (MiB)": rss_after / 2**20,
    }


def run_all(sessions: int, paths: int) -> dict[str, dict[str, float]]:
    """Both measurements (tracemalloc started and stopped here)."""
    tracemalloc.start()
    try:
        sizes = session_sizes(min(sessions, 500), paths)
        portal = remote_portal(sessions, paths)
        del portal["process RSS (MiB)"]  # inflated by tracemalloc; measured below
    finally:
        tracemalloc.stop()
    # RSS without tracemalloc's overhead, in a fresh process (a second pass here would reuse
    # the arenas the first pass freed and show too little).
    argv = [sys.executable, __file__, "--rss-child", "--sessions", str(sessions)]
    rss = bench_core.child_json([*argv, "--paths", str(paths)], timeout=600)
    portal["process RSS growth, all sessions (MiB)"] = rss["process RSS growth, all sessions (MiB)"]
    portal["process RSS, all sessions (MiB)"] = rss["process RSS (MiB)"]
    portal["handshakes + setup per session (ms)"] = rss["handshakes + setup per session (ms)"]
    return {"sizes": sizes, "portal": portal}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--paths", type=int, default=2)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--rss-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_child:
        print(json.dumps(remote_portal(args.sessions, args.paths)))
        return 0
    results: dict[str, Any] = run_all(args.sessions, args.paths)
    for group, values in results.items():
        print(group)
        for name, value in values.items():
            print(f"  {name:45} {value:12,.1f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
