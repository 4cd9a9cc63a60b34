"""The API as the daemon starts it: on the portal's loop, one-line error if it cannot listen."""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.request

import pytest
from apiharness import CONFIG, SERVER

from braid.core.keys import public_key
from braid.core.secure import PeerSpec, SecureConfig
from braid.io.base import DriverError
from braid.io.memory import MemoryNetwork, MemoryTun
from braid.runtime.daemon import ApiSettings, _start_api
from braid.runtime.portal import RemotePortal

TOKEN = "daemon-test-token-123456"


def remote_portal() -> RemotePortal:
    key = bytes(range(32))
    security = SecureConfig(private_key=key, peers=(PeerSpec(public_key(bytes(32))),))
    return RemotePortal(
        MemoryTun("r0"), MemoryNetwork().endpoint(*SERVER), session_config=CONFIG, security=security
    )


def test_api_served_on_the_portal_loop() -> None:
    async def main() -> dict:
        portal = remote_portal()
        portal.start()
        server = await _start_api(portal, ApiSettings(address="127.0.0.1", port=0, token=TOKEN))
        try:
            req = urllib.request.Request(server.url + "/api/v1/portal")
            req.add_header("Authorization", f"Bearer {TOKEN}")
            loop = asyncio.get_running_loop()
            body = await loop.run_in_executor(
                None, lambda: urllib.request.urlopen(req, timeout=5).read()
            )
            return json.loads(body)
        finally:
            await server.stop()
            portal.close()

    info = asyncio.run(main())
    assert info["role"] == "remote" and info["sessions"] == 0


def test_busy_port_is_one_line_driver_error() -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]

    async def main() -> None:
        portal = remote_portal()
        portal.start()
        try:
            await _start_api(portal, ApiSettings(address="127.0.0.1", port=port, token=TOKEN))
        finally:
            portal.close()

    try:
        with pytest.raises(DriverError) as info:
            asyncio.run(main())
    finally:
        busy.close()
    message = str(info.value)
    assert message.startswith(f"api: cannot listen on http://127.0.0.1:{port}")
    assert "change [api]" in message and "\n" not in message
