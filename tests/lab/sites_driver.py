"""Many local portals in one process, each in its own network namespace (for test_sites).

    python sites_driver.py SITES.json

SITES.json lists {ns, private_key, remote_public, address, remote}. For each site the
process enters the site's namespace, opens the path socket (pinned to `wan0`) and the
TUN device there (they stay in that namespace), then runs every portal on one event
loop: 50 real local portals cost one interpreter instead of 50. Prints `up` once all
are started; SIGTERM closes them all (CLOSE sent, TUNs removed) and exits 0.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys

from pyroute2.netns import setns

from braid.core.keys import decode_key
from braid.core.secure import PeerSpec, SecureConfig
from braid.core.session import SessionConfig
from braid.io.tun import TunDevice
from braid.io.udp import open_path_socket
from braid.runtime.portal import LocalPortal, PathLink

CONFIG = SessionConfig(keepalive_interval=0.25, dead_interval=2.0)


def open_sites(sites: list[dict[str, str]]) -> list[LocalPortal]:
    portals = []
    for site in sites:
        setns(site["ns"])
        host, port = site["remote"].rsplit(":", 1)
        endpoint = open_path_socket(remote=(host, int(port)), interface="wan0", link="wan")
        tun = TunDevice.open("braid0", mtu=1400, addresses=[site["address"]])
        security = SecureConfig(
            private_key=decode_key(site["private_key"]),
            peers=(PeerSpec(decode_key(site["remote_public"])),),
        )
        portals.append(
            LocalPortal(
                tun, [PathLink(0, "wan", endpoint)], session_config=CONFIG, security=security
            )
        )
    return portals


async def serve(portals: list[LocalPortal]) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    for portal in portals:
        portal.start()
    print("up", flush=True)
    await stop.wait()
    for portal in portals:
        portal.close()


def main() -> int:
    with open(sys.argv[1]) as f:
        sites = json.load(f)
    portals = open_sites(sites)
    try:
        asyncio.run(serve(portals))
    finally:
        for portal in portals:
            portal.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
