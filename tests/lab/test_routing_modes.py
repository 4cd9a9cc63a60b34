"""Routing modes applied by `braid up` and removed on `down`, in network namespaces.

nat               site -> remote portal -> "internet" host that has no route back
                  to the site: works only because the remote portal masquerades.
routed            a client behind the local portal uses an address of the remote
                  portal's subnet (dissertation fig. 4.4): the internet host reaches
                  it by that address, no NAT anywhere.
single-interface  the remote portal has one interface and shares its own address
                  with the client (fig. 4.7): a TCP server on the client answers at
                  the portal's address, while braid's UDP port stays the portal's.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from routinglab import Lab, eventually, keypair, ping, toml

pytestmark = pytest.mark.root


@pytest.fixture
def lab() -> Iterator[Lab]:
    with Lab() as lab:
        yield lab


def local_config(
    private: str,
    remote_public: str,
    *,
    remote: str,
    interface: str,
    routes: list[str],
    routing: str = "",
) -> str:
    return f"""role = "local"
private_key = {toml(private)}

[tunnel]
address = "10.99.0.2/30"
routes = {toml(routes)}

[session]
keepalive_interval = 0.1
dead_interval = 0.5

[[link]]
name = "wan"
interface = {toml(interface)}
remote = {toml(remote)}

[[peer]]
name = "remote"
public_key = {toml(remote_public)}
{routing}"""


def remote_config(
    private: str, local_public: str, *, allowed: list[str], routes: list[str], routing: str
) -> str:
    return f"""role = "remote"
private_key = {toml(private)}

[tunnel]
address = "10.99.0.1/30"
routes = {toml(routes)}

[session]
keepalive_interval = 0.1
dead_interval = 0.5

[listen]
address = "0.0.0.0"
port = 7100

[[peer]]
name = "site"
public_key = {toml(local_public)}
allowed_ips = {toml([*allowed, "10.99.0.2/32"])}
{routing}"""


def test_nat_mode(lab: Lab) -> None:
    local, remote, inet = lab.ns("l"), lab.ns("r"), lab.ns("i")
    lab.veth(local, "wan0", "172.31.1.2/24", remote, "wan0", "172.31.1.1/24")
    lab.veth(remote, "inet0", "198.18.0.1/24", inet, "inet0", "198.18.0.2/24")
    lab.sh(local, "ip", "addr", "add", "10.1.0.1/32", "dev", "lo")  # the site's address
    lk, lp = keypair()
    rk, rp = keypair()
    r = lab.braid_up(
        remote,
        "remote",
        remote_config(
            rk,
            lp,
            allowed=["10.1.0.0/24"],
            routes=["10.1.0.0/24"],
            routing='\n[routing]\nmode = "nat"\ninterface = "inet0"\n',
        ),
    )
    lab.braid_up(
        local,
        "local",
        local_config(lk, rp, remote="172.31.1.1:7100", interface="wan0", routes=["198.18.0.0/24"]),
    )
    assert "routing nat for 10.1.0.0/24 on inet0 applied" in lab.log("remote")
    assert lab.sh(remote, "sysctl", "-n", "net.ipv4.ip_forward").strip() == "1"
    # The internet host has no route to 10.1.0.0/24: only masquerading makes this work.
    assert eventually(lambda: ping(lab, local, "198.18.0.2", source="10.1.0.1"), 10)
    assert "masquerade" in lab.sh(remote, "nft", "list", "table", "inet", "braid_braid0")
    assert lab.stop(r) == 0
    # down removed the table and restored forwarding.
    assert not lab.ok(remote, "nft", "list", "table", "inet", "braid_braid0")
    assert lab.sh(remote, "sysctl", "-n", "net.ipv4.ip_forward").strip() == "0"


def test_routed_mode(lab: Lab) -> None:
    client, local, remote, inet = lab.ns("c"), lab.ns("l"), lab.ns("r"), lab.ns("i")
    lab.veth(client, "c0", "198.18.0.10/32", local, "lan0", "192.168.50.1/24")
    lab.sh(client, "ip", "route", "add", "192.168.50.1", "dev", "c0")
    lab.sh(client, "ip", "route", "add", "default", "via", "192.168.50.1", "dev", "c0")
    lab.veth(local, "wan0", "172.31.1.2/24", remote, "wan0", "172.31.1.1/24")
    lab.veth(remote, "inet0", "198.18.0.1/24", inet, "inet0", "198.18.0.2/24")
    lk, lp = keypair()
    rk, rp = keypair()
    r = lab.braid_up(
        remote,
        "remote",
        remote_config(
            rk,
            lp,
            allowed=["198.18.0.10/32"],
            routes=["198.18.0.10/32"],
            routing='\n[routing]\nmode = "routed"\ninterface = "inet0"\nprefixes = ["198.18.0.10/32"]\n',
        ),
    )
    lp_proc = lab.braid_up(
        local,
        "local",
        local_config(
            lk,
            rp,
            remote="172.31.1.1:7100",
            interface="wan0",
            routes=[],
            routing='\n[routing]\nmode = "routed"\ninterface = "lan0"\nprefixes = ["198.18.0.10/32"]\n',
        ),
    )
    rules = lab.sh(local, "ip", "rule", "show")
    assert "from 198.18.0.10 iif lan0 lookup 7100" in rules
    assert "to 198.18.0.10 lookup 7101" in rules
    # The client uses its (remote-subnet) address end to end, in both directions.
    assert eventually(lambda: ping(lab, client, "198.18.0.2"), 10)
    assert ping(lab, inet, "198.18.0.10")
    neighbours = lab.sh(inet, "ip", "neigh", "show", "198.18.0.10")
    remote_mac = lab.sh(remote, "cat", "/sys/class/net/inet0/address").strip()
    assert remote_mac in neighbours  # proxy ARP by the remote portal
    assert lab.stop(lp_proc) == 0
    rules = lab.sh(local, "ip", "rule", "show")
    assert "7100" not in rules and "7101" not in rules
    assert lab.sh(local, "sysctl", "-n", "net.ipv4.conf.lan0.proxy_arp").strip() == "0"
    assert lab.stop(r) == 0


def test_single_interface_remote_portal(lab: Lab) -> None:
    client, local, remote, inet = lab.ns("c"), lab.ns("l"), lab.ns("r"), lab.ns("i")
    # One L2 segment (a bridge in the "internet" namespace) holds the remote portal's only
    # interface, the local portal's WAN and the internet host.
    lab.sh(inet, "ip", "link", "add", "br0", "type", "bridge")
    lab.sh(inet, "ip", "addr", "add", "198.18.0.2/24", "dev", "br0")
    lab.sh(inet, "ip", "link", "set", "br0", "up")
    lab.veth(remote, "inet0", "198.18.0.1/24", inet, "pr", None)
    lab.veth(local, "wan0", "198.18.0.5/24", inet, "pl", None)
    for port in ("pr", "pl"):
        lab.sh(inet, "ip", "link", "set", port, "master", "br0")
    # The client shares the remote portal's address.
    lab.veth(client, "c0", "198.18.0.1/32", local, "lan0", "192.168.50.1/24")
    lab.sh(client, "ip", "route", "add", "192.168.50.1", "dev", "c0")
    lab.sh(client, "ip", "route", "add", "default", "via", "192.168.50.1", "dev", "c0")
    lk, lp = keypair()
    rk, rp = keypair()
    r = lab.braid_up(
        remote,
        "remote",
        remote_config(
            rk,
            lp,
            allowed=["198.18.0.1/32"],
            routes=[],
            routing='\n[routing]\nmode = "single-interface"\ninterface = "inet0"\nprefixes = ["198.18.0.1/32"]\n',
        ),
    )
    lab.braid_up(
        local,
        "local",
        local_config(
            lk,
            rp,
            remote="198.18.0.1:7100",
            interface="wan0",
            routes=[],
            routing='\n[routing]\nmode = "routed"\ninterface = "lan0"\nprefixes = ["198.18.0.1/32"]\n',
        ),
    )
    # The client's server answers at the remote portal's own address; braid's UDP port
    # (the tunnel itself) stays with the portal.
    lab.spawn(client, "python3", "-m", "http.server", "-b", "198.18.0.1", "8080", "-d", "/")
    assert eventually(
        lambda: lab.ok(
            inet, "curl", "-sf", "-m", "2", "-o", "/dev/null", "http://198.18.0.1:8080/"
        ),
        15,
    ), lab.log("remote")[-2000:] + lab.log("local")[-2000:]
    assert lab.ok(remote, "ip", "link", "show", "inet0")
    links = lab.sh(remote, "ip", "-o", "link", "show")
    assert sorted(line.split(":")[1].strip().split("@")[0] for line in links.splitlines()) == [
        "braid0",
        "inet0",
        "lo",
    ]
    assert lab.stop(r) == 0
    rules = lab.sh(remote, "ip", "rule", "show")
    assert rules.splitlines()[0].startswith("0:") and "lookup local" in rules.splitlines()[0]
    assert "7100" not in rules
