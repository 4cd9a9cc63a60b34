"""Fixtures of the lab tests: skip root tests when not root, always clean up."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from braid.lab.emulator import Emulator, LinkShape
from braid.lab.topology import Topology


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Root tests need root and iperf3: say so instead of failing obscurely."""
    reason = None
    if os.geteuid() != 0:
        reason = "needs root (network namespaces)"
    elif shutil.which("iperf3") is None:
        reason = "needs iperf3 (apt-get install -y iperf3)"
    if reason is None:
        return
    for item in items:
        if "root" in item.keywords and str(item.path).startswith(os.path.dirname(__file__)):
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def one_link() -> Iterator[tuple[Topology, Emulator]]:
    """A 1-link lab routed over that link, 20 Mbit/s and no delay to start with."""
    with (
        Topology(1) as topo,
        Emulator(topo, [LinkShape(20e6, 20e6)], seed=1) as emulator,
    ):
        topo.route_via(1)
        yield topo, emulator
