"""Issue 4 in the lab: real ``braid up`` portals with keys (wire v3), attacked from outside.

(a) mismatched keys cannot talk; the right keys do, over every path, through fast rekeys;
(b) a flood of bogus initiations (>= 50 000/s, from another namespace) does not stop an
    established session's traffic: ping and iperf3 measured with and without the flood;
(c) a spoofed path (forged datagrams with the session's id and new path ids, and replays of
    captured datagrams) from another namespace gets no share of the traffic.

The attacker namespace hangs off the remote portal by its own veth (10.200.0.0/24), so the
flood competes for the remote portal's CPU and socket, not for the emulated links.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from braid.core.keys import encode_key, generate_private_key, public_key
from braid.lab.emulator import Emulator, LinkShape
from braid.lab.netns import PREFIX, add_netns, del_netns, ns_cmd, python_cmd, run
from braid.lab.portals import (
    PORT,
    PortalKeys,
    Portals,
    local_config,
    remote_config,
)
from braid.lab.topology import SERVER_IP, Topology
from braid.lab.traffic import IperfServer, TrafficSpec, iperf_client_argv, parse_iperf

pytestmark = pytest.mark.root

LINK = LinkShape(rate_up_bps=20e6, rate_down_bps=20e6, delay=0.005)
FLOOD = Path(__file__).with_name("flood.py")
ATTACKER_IP = "10.200.0.2"
FLOOD_RATE = 60_000  # bogus initiations per second (one sender process)
REPLAY_RATE = 10_000  # replayed/forged datagrams per second
PORTAL_ATTACK_IP = "10.200.0.1"


class KeyedPortals(Portals):
    """The lab's portals, with keys we hold (or a remote that lists the wrong key) and stats."""

    def __init__(
        self,
        topology: Topology,
        shapes: list[LinkShape],
        session: dict[str, Any] | None = None,
        *,
        remote_knows: str | None = None,
        wait: bool = True,
    ) -> None:
        super().__init__(topology, shapes, session)
        self.keys = PortalKeys.generate()
        self.remote_knows = remote_knows or self.keys.local_public
        self.wait = wait

    def __enter__(self) -> KeyedPortals:
        super().__enter__()
        return self

    def stats(self, role: str) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.topology.file(f"{role}-stats.json").read_text())
        return doc

    def start(self) -> None:
        topo = self.topology
        keys = self.keys
        remote_view = replace(keys, local_public=self.remote_knows)
        for path, text in (
            (self.local_path, local_config(topo, self.shapes, self.session, keys)),
            (self.remote_path, remote_config(self.session, remote_view)),
        ):
            path.touch(mode=0o600)
            path.chmod(0o600)
            path.write_text(text)
        for role, ns, path in (
            ("remote", topo.remote, self.remote_path),
            ("local", topo.local, self.local_path),
        ):
            stats = str(topo.file(f"{role}-stats.json"))
            with open(self.log(role), "w") as log:
                self._procs[role] = topo.spawn(
                    ns,
                    python_cmd("braid", "up", str(path), "--stats", stats),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
        deadline = time.monotonic() + self.timeout
        for role in ("remote", "local"):
            self._wait_up(role, deadline)
        if self.wait:
            self.wait_tunnel(max(1.0, deadline - time.monotonic()))


def _urandom(n: int) -> bytes:
    import os

    return os.urandom(n)


def ping(topo: Topology, seconds: float, interval: float = 0.05) -> dict[str, Any]:
    argv = python_cmd(
        "braid.lab.ping", SERVER_IP, "--interval", str(interval), "--duration", str(seconds)
    )
    result: dict[str, Any] = json.loads(run(ns_cmd(topo.client, argv), timeout=seconds + 20))
    return result


def tcp_mbps(topo: Topology, seconds: int) -> float:
    argv = iperf_client_argv(
        TrafficSpec("tcp"), direction="up", cc="cubic", duration=seconds, interval=1
    )
    report = json.loads(run(ns_cmd(topo.client, argv), timeout=seconds + 30))
    return parse_iperf(report, direction="up", traffic=TrafficSpec("tcp")).mbps


def loss(result: dict[str, Any]) -> float:
    return 1.0 - float(result["received"]) / max(1, int(result["sent"]))


def median_rtt(result: dict[str, Any]) -> float:
    rtts = sorted(float(r) for r in result["rtt_ms"] if r is not None)
    return rtts[len(rtts) // 2] if rtts else float("inf")


class Attacker:
    """A namespace joined to the remote portal's namespace by one veth pair."""

    def __init__(self, topo: Topology) -> None:
        self.topo = topo
        self.ns = f"{PREFIX}{topo.tag}-at"

    def __enter__(self) -> Attacker:
        add_netns(self.ns)
        try:
            run(
                [
                    "ip",
                    "-n",
                    self.ns,
                    "link",
                    "add",
                    "atk0",
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "atk0",
                    "netns",
                    self.topo.remote,
                ]
            )
            run(["ip", "-n", self.ns, "addr", "add", f"{ATTACKER_IP}/24", "dev", "atk0"])
            run(
                [
                    "ip",
                    "-n",
                    self.topo.remote,
                    "addr",
                    "add",
                    f"{PORTAL_ATTACK_IP}/24",
                    "dev",
                    "atk0",
                ]
            )
            for ns in (self.ns, self.topo.remote):
                run(["ip", "-n", ns, "link", "set", "atk0", "up"])
            run(["ip", "-n", self.ns, "link", "set", "lo", "up"])
        except BaseException:
            del_netns(self.ns)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        del_netns(self.ns)

    def start(self, *args: str) -> subprocess.Popen[str]:
        return self.topo.spawn(self.ns, [sys.executable, str(FLOOD), *args])

    @staticmethod
    def result(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
        out, err = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, err
        doc: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return doc


@pytest.mark.level
def test_wrong_keys_cannot_talk_right_keys_do_over_every_path_through_rekeys() -> None:
    with Topology(2) as topo, Emulator(topo, [LINK, LINK]), IperfServer(topo):
        topo.route_via(None)
        stranger = encode_key(public_key(generate_private_key(_urandom)))
        with KeyedPortals(topo, [LINK, LINK], remote_knows=stranger, wait=False) as wrong:
            result = ping(topo, 2.0, interval=0.1)
            remote = wrong.stats("remote")
            local = wrong.stats("local")
        print(
            f"\nmismatched keys: {result['received']}/{result['sent']} pings answered;"
            f" remote security counters {remote['security']}"
        )
        assert result["received"] == 0
        assert remote["sessions"] == []
        assert remote["security"].get("unknown_peer", 0) >= 1
        assert local["security"]["handshakes"] == 0

        session = {"rekey_interval": 2.0}
        with KeyedPortals(topo, [LINK, LINK], session) as portals:
            pings = ping(topo, 3.0)
            mbps = tcp_mbps(topo, 5)
            time.sleep(1.2)  # a stats write after the traffic
            local = portals.stats("local")
            remote = portals.stats("remote")
            assert portals.alive()
        handshakes = local["security"]["handshakes"]
        paths = local["sessions"][0]["paths"]
        print(
            f"right keys, rekey every 2 s: ping {pings['received']}/{pings['sent']},"
            f" median {median_rtt(pings):.1f} ms; TCP {mbps:.1f} Mbit/s;"
            f" {handshakes} handshakes; datagrams sent per path"
            f" {[p['datagrams_sent'] for p in paths]}; local drops"
            f" { {k: v for k, v in local['sessions'][0]['drops'].items() if v} }"
        )
        assert handshakes >= 4  # >= 3 rotations during the traffic
        assert pings["received"] == pings["sent"]  # no gap through the rotations
        # Both paths carry the flow: one alone gives at most 20 * 0.956. The margin under
        # the ~35 Mbit/s usually measured is for a loaded machine (26.6 was seen once).
        assert mbps > 1.25 * 20 * 0.956
        for path in paths:
            assert path["datagrams_sent"] > 1000 and path["up"]
        rdrops = remote["sessions"][0]["drops"]
        assert rdrops.get("auth", 0) == 0 and rdrops.get("replay", 0) == 0


@pytest.mark.level
def test_flood_of_bogus_initiations_does_not_stop_the_session() -> None:
    with (
        Topology(2) as topo,
        Emulator(topo, [LINK, LINK]),
        IperfServer(topo),
        Attacker(topo) as attacker,
    ):
        topo.route_via(None)
        with KeyedPortals(topo, [LINK, LINK]) as portals:
            remote_public = portals.keys.remote_public
            quiet_ping = ping(topo, 3.0)
            quiet_mbps = tcp_mbps(topo, 4)
            seconds = 12.0
            floods = [
                attacker.start(
                    "initiations",
                    PORTAL_ATTACK_IP,
                    str(PORT),
                    str(seconds),
                    str(FLOOD_RATE),
                    remote_public,
                )
            ]
            time.sleep(1.0)
            flood_ping = ping(topo, 3.0)
            flood_mbps = tcp_mbps(topo, 4)
            sent = [Attacker.result(p, seconds + 10) for p in floods]
            time.sleep(1.2)
            remote = portals.stats("remote")
            assert portals.alive()
    rate = sum(s["rate"] for s in sent)
    answered = sum(s["received"] for s in sent)
    print(
        f"\nflood: {rate:,} bogus initiations/s (valid MAC1) for {seconds:g} s;"
        f" answered with {answered} cookie replies; remote security {remote['security']}"
    )
    print(
        f"without flood: ping loss {loss(quiet_ping):.0%}, median {median_rtt(quiet_ping):.1f} ms,"
        f" TCP {quiet_mbps:.1f} Mbit/s; during the flood: ping loss {loss(flood_ping):.0%},"
        f" median {median_rtt(flood_ping):.1f} ms, TCP {flood_mbps:.1f} Mbit/s"
    )
    assert rate >= 50_000
    assert remote["security"]["handshakes"] <= 2 + 20  # the genuine one(s) + the DH budget
    assert loss(flood_ping) <= 0.10
    assert flood_mbps >= 0.5 * quiet_mbps
    assert answered <= 5 * seconds * 2 + 10  # cookie replies only, rate limited


def test_spoofed_path_gets_no_share_of_the_traffic() -> None:
    with (
        Topology(2) as topo,
        Emulator(topo, [LINK, LINK]),
        IperfServer(topo),
        Attacker(topo) as attacker,
    ):
        topo.route_via(None)
        with KeyedPortals(topo, [LINK, LINK]) as portals:
            capture_file = topo.file("captured.hex")
            capture = topo.spawn(
                topo.remote,
                [
                    sys.executable,
                    str(FLOOD),
                    "capture",
                    "wan1",
                    str(PORT),
                    "1.5",
                    str(capture_file),
                ],
            )
            ping(topo, 1.0)
            out, err = capture.communicate(timeout=20)
            captured = json.loads(out.strip().splitlines()[-1])["captured"]
            assert captured > 10, err
            seconds = 6.0
            spoof = attacker.start(
                "replay",
                PORTAL_ATTACK_IP,
                str(PORT),
                str(seconds),
                str(capture_file),
                str(REPLAY_RATE),
            )
            time.sleep(0.5)
            during = ping(topo, 3.0)
            mbps = tcp_mbps(topo, 3)
            spoofed = Attacker.result(spoof, seconds + 10)
            time.sleep(1.2)
            remote = portals.stats("remote")
            assert portals.alive()
    drops = remote["sessions"][0]["drops"]
    print(
        f"\nspoofer: replayed/forged {spoofed['sent']:,} datagrams ({spoofed['rate']:,}/s) from"
        f" {ATTACKER_IP}; it received {spoofed['received']} datagrams"
        f" ({spoofed['received_bytes']} bytes); session drops"
        f" { {k: v for k, v in drops.items() if v} }; during it: ping loss {loss(during):.0%},"
        f" TCP {mbps:.1f} Mbit/s"
    )
    assert spoofed["received"] == 0  # no share of the traffic, not even a reply
    assert drops.get("replay", 0) + drops.get("auth", 0) > 0
    assert loss(during) <= 0.05
    assert mbps > 1.4 * 20 * 0.956
