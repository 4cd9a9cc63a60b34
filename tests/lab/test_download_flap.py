"""Issue 6 in the lab: a large download through braid while a link flaps.

An HTTP server in the server namespace serves 200 MB of random bytes; curl in the client
namespace fetches them through the tunnel (2 links, 30 + 30 Mbit/s) while link 2 is cut
for 2 s every 5 s. The download must complete without a client error, and its sha256
must equal the file's: nothing lost, duplicated or corrupted on the way.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from braid.lab.emulator import Emulator, LinkShape
from braid.lab.netns import ns_cmd
from braid.lab.portals import Portals
from braid.lab.topology import SERVER_IP, Topology
from braid.lab.traffic import http_server_argv

pytestmark = [pytest.mark.root, pytest.mark.level]

LINK = LinkShape(rate_up_bps=30e6, rate_down_bps=30e6, delay=0.005)
SIZE = 200 * 1024 * 1024
HTTP_PORT = 8089


def _flap(emulator: Emulator, stop: threading.Event, cuts: list[float]) -> None:
    while not stop.wait(3.0):
        emulator.cut(2)
        cuts.append(time.monotonic())
        if stop.wait(2.0):
            emulator.restore(2)
            return
        emulator.restore(2)


def test_large_download_survives_a_flapping_link(tmp_path: Path) -> None:
    data = tmp_path / "www" / "big.bin"
    data.parent.mkdir()
    digest = hashlib.sha256()
    with open(data, "wb") as f:
        for _ in range(SIZE // (1 << 20)):
            chunk = os.urandom(1 << 20)
            digest.update(chunk)
            f.write(chunk)
    expected = digest.hexdigest()
    out = tmp_path / "got.bin"
    with (
        Topology(2) as topo,
        Emulator(topo, [LINK, LINK]) as emulator,
        Portals(topo, [LINK, LINK]),
    ):
        server = topo.spawn(
            topo.server,
            http_server_argv(str(data.parent), HTTP_PORT),
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        time.sleep(1.0)
        stop = threading.Event()
        cuts: list[float] = []
        flapper = threading.Thread(target=_flap, args=(emulator, stop, cuts), daemon=True)
        started = time.monotonic()
        flapper.start()
        try:
            result = subprocess.run(
                ns_cmd(
                    topo.client,
                    [
                        "curl",
                        "--silent",
                        "--show-error",
                        "--fail",
                        "--max-time",
                        "300",
                        "-o",
                        str(out),
                        f"http://{SERVER_IP}:{HTTP_PORT}/big.bin",
                    ],
                ),
                capture_output=True,
                text=True,
                timeout=330,
            )
        finally:
            stop.set()
            flapper.join(timeout=10)
            topo.stop(server)
        took = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    got = hashlib.sha256(out.read_bytes()).hexdigest()
    print(
        f"\n200 MB through braid in {took:.1f} s ({SIZE * 8 / took / 1e6:.1f} Mbit/s) "
        f"with link 2 cut {len(cuts)} times"
    )
    assert len(cuts) >= 3
    assert got == expected
