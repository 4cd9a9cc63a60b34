"""Many sites through one remote portal: 50 local portals, each its own key and session.

The remote portal is a real `braid up` process (NAT mode, so it forwards) with one
[[peer]] per site, each allowed only its own tunnel address; the 50 local portals run in
one helper process (tests/lab/sites_driver.py), each in its own namespace with its own
TUN and pinned socket. Checks: every site reaches the remote portal through its own
session; the session table (REST API) lists 50 sessions with their peers and egress;
a site can neither reach another site nor send with another site's address.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from routinglab import Lab, eventually, keypair, ping, toml

pytestmark = pytest.mark.root

SITES = 50
TOKEN = "sites-test-token-0123456789"
API_PORT = 7181


def site_address(i: int) -> str:
    return f"10.99.{i}.2"


@pytest.fixture
def lab() -> Iterator[Lab]:
    with Lab() as lab:
        yield lab


def build(lab: Lab) -> tuple[str, list[str]]:
    remote = lab.ns("r")
    lab.sh(remote, "ip", "link", "add", "br0", "type", "bridge")
    lab.sh(remote, "ip", "addr", "add", "172.30.0.1/16", "dev", "br0")
    lab.sh(remote, "ip", "link", "set", "br0", "up")
    sites = []
    for i in range(1, SITES + 1):
        ns = lab.ns(f"s{i}")
        subprocess.run(
            [
                "ip",
                "-n",
                ns,
                "link",
                "add",
                "wan0",
                "type",
                "veth",
                "peer",
                "name",
                f"s{i}",
                "netns",
                remote,
            ],
            check=True,
        )
        subprocess.run(
            ["ip", "-n", ns, "-batch", "-"],
            input=f"addr add 172.30.1.{i}/16 dev wan0\nlink set wan0 up\n",
            text=True,
            check=True,
        )
        sites.append(ns)
    batch = "".join(f"link set s{i} master br0\nlink set s{i} up\n" for i in range(1, SITES + 1))
    subprocess.run(["ip", "-n", remote, "-batch", "-"], input=batch, text=True, check=True)
    return remote, sites


def table(lab: Lab, remote: str) -> dict:
    """`braid show --json` in the remote portal's namespace (its API is on loopback there)."""
    out = lab.sh(
        remote,
        sys.executable,
        "-m",
        "braid",
        "show",
        "--json",
        "--api",
        f"http://127.0.0.1:{API_PORT}",
        "--token",
        TOKEN,
    )
    return json.loads(out)


def test_fifty_sites_isolated(lab: Lab) -> None:
    started = time.monotonic()
    remote, sites = build(lab)
    rk, rp = keypair()
    keys = [keypair() for _ in sites]
    peers = "".join(
        f'\n[[peer]]\nname = "site{i}"\npublic_key = {toml(pub)}\n'
        f"allowed_ips = {toml([site_address(i) + '/32'])}\n"
        for i, (_, pub) in enumerate(keys, start=1)
    )
    config = f"""role = "remote"
private_key = {toml(rk)}

[tunnel]
address = "10.99.0.1/16"

[listen]
address = "0.0.0.0"
port = 7100

[api]
listen = "127.0.0.1"
port = {API_PORT}
token = {toml(TOKEN)}

[routing]
mode = "nat"
prefixes = ["10.99.0.0/16"]
{peers}"""
    lab.braid_up(remote, "remote", config)
    spec = [
        {
            "ns": ns,
            "private_key": private,
            "remote_public": rp,
            "address": site_address(i) + "/16",
            "remote": "172.30.0.1:7100",
        }
        for i, (ns, (private, _)) in enumerate(zip(sites, keys, strict=True), start=1)
    ]
    spec_path = lab.write("sites.json", json.dumps(spec))
    driver = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("sites_driver.py")), str(spec_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lab.procs.append(driver)  # type: ignore[arg-type]
    assert driver.stdout is not None
    line = driver.stdout.readline()
    assert line.strip() == "up", driver.stderr.read() if driver.stderr else ""

    # The remote portal's session table (through its API) fills with 50 sessions.
    assert eventually(lambda: len(table(lab, remote)["sessions"]) == SITES, 30, 0.5), table(
        lab, remote
    )["portal"]

    # Every site reaches the remote portal through the tunnel, from its own address.
    failed = [
        i
        for i, ns in enumerate(sites, start=1)
        if not eventually(lambda ns=ns, i=i: ping(lab, ns, "10.99.0.1", source=site_address(i)), 10)
    ]
    assert not failed, f"sites without traffic: {failed}"
    sessions = table(lab, remote)["sessions"]
    assert len(sessions) == SITES
    assert len({s["peer"] for s in sessions}) == SITES  # each session from its own site
    egress = sorted(a for s in sessions for a in s["egress"])
    assert egress == sorted(site_address(i) for i in range(1, SITES + 1))
    assert all(s["paths"][0]["state"] == "up" for s in sessions)

    # Isolation: no site reaches another (forwarding is on for NAT; braid drops it).
    for a, b in ((1, 2), (7, 42), (SITES, 1)):
        assert not ping(lab, sites[a - 1], site_address(b), source=site_address(a), wait=1)
    # ... and no site can use another site's address (allowed_ips per peer).
    listener = lab.spawn(
        remote,
        sys.executable,
        "-c",
        "import socket,sys\n"
        "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
        "s.bind(('10.99.0.1',9999)); s.settimeout(4)\n"
        "out=open(sys.argv[1],'w')\n"
        "try:\n"
        "    while True:\n"
        "        d,a=s.recvfrom(2000); out.write(a[0]+' '+d.decode()+'\\n'); out.flush()\n"
        "except OSError: pass\n",
        str(lab.dir / "received.txt"),
    )
    time.sleep(0.5)
    sender = (
        "import socket,struct,sys\n"
        "src,dst,payload=sys.argv[1],sys.argv[2],sys.argv[3].encode()\n"
        "udp=struct.pack('!HHHH',4000,9999,8+len(payload),0)+payload\n"
        "ip=struct.pack('!BBHHHBBH4s4s',0x45,0,20+len(udp),1,0,64,17,0,"
        "socket.inet_aton(src),socket.inet_aton(dst))\n"
        "s=socket.socket(socket.AF_INET,socket.SOCK_RAW,socket.IPPROTO_RAW)\n"
        "for _ in range(3): s.sendto(ip+udp,(dst,0))\n"
    )
    lab.sh(sites[0], sys.executable, "-c", sender, site_address(1), "10.99.0.1", "own")
    lab.sh(sites[0], sys.executable, "-c", sender, site_address(2), "10.99.0.1", "spoofed")
    listener.wait(10)
    received = (lab.dir / "received.txt").read_text()
    assert f"{site_address(1)} own" in received
    assert "spoofed" not in received

    assert lab.stop(driver) == 0  # type: ignore[arg-type]
    assert time.monotonic() - started < 120
