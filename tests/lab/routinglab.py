"""A tiny namespace lab for the routing-mode and many-sites tests (root only).

Namespaces and veth pairs are created with iproute2 under unique names (pid + random
suffix) and always removed, portals run as real `braid up` processes from config files.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from braid.core.keys import encode_key, generate_private_key, public_key


def keypair() -> tuple[str, str]:
    """(private, public) as the base64 text `braid genkey`/`pubkey` print."""
    private = generate_private_key(os.urandom)
    return encode_key(private), encode_key(public_key(private))


def toml(value: Any) -> str:
    """A scalar or list as TOML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    return "[" + ", ".join(toml(v) for v in value) + "]"


class Lab:
    """Namespaces, veths and `braid up` processes; `close()` removes everything."""

    def __init__(self) -> None:
        self.tag = f"{os.getpid() % 100000}{secrets.token_hex(2)}"
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        self.dir = Path(tempfile.mkdtemp(prefix="braid-rt-"))

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ns(self, name: str) -> str:
        """A new namespace (loopback up); its full name."""
        full = f"brt{self.tag}{name}"
        subprocess.run(["ip", "netns", "add", full], check=True)
        self.namespaces.append(full)
        self.sh(full, "ip", "link", "set", "lo", "up")
        return full

    def sh(self, ns: str, *cmd: str, check: bool = True, timeout: float = 20) -> str:
        """Run `cmd` in `ns`; its stdout."""
        done = subprocess.run(
            ["ip", "netns", "exec", ns, *cmd],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} in {ns}: {done.stderr.strip()}")
        return done.stdout

    def ok(self, ns: str, *cmd: str, timeout: float = 20) -> bool:
        """True if `cmd` succeeds in `ns`."""
        return (
            subprocess.run(
                ["ip", "netns", "exec", ns, *cmd], capture_output=True, timeout=timeout
            ).returncode
            == 0
        )

    def veth(
        self, ns_a: str, a: str, cidr_a: str | None, ns_b: str, b: str, cidr_b: str | None
    ) -> None:
        """A veth pair `a` (in ns_a) <-> `b` (in ns_b), up, with optional addresses."""
        subprocess.run(
            ["ip", "-n", ns_a, "link", "add", a, "type", "veth", "peer", "name", b, "netns", ns_b],
            check=True,
        )
        for ns, dev, cidr in ((ns_a, a, cidr_a), (ns_b, b, cidr_b)):
            if cidr:
                self.sh(ns, "ip", "addr", "add", cidr, "dev", dev)
            self.sh(ns, "ip", "link", "set", dev, "up")

    def sysctl(self, ns: str, key: str, value: str) -> None:
        self.sh(ns, "sysctl", "-qw", f"{key}={value}")

    def write(self, name: str, text: str) -> Path:
        path = self.dir / name
        path.touch(mode=0o600)
        path.chmod(0o600)
        path.write_text(text)
        return path

    def braid_up(
        self, ns: str, name: str, config: str, *, timeout: float = 20
    ) -> subprocess.Popen[bytes]:
        """Start `braid up` in `ns` with `config`; returns once it logged `braid: up`."""
        path = self.write(f"{name}.toml", config)
        log = self.dir / f"{name}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", ns, sys.executable, "-m", "braid", "up", str(path)],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.procs.append(proc)
        end = time.monotonic() + timeout
        while "braid: up" not in log.read_text(errors="replace"):
            if proc.poll() is not None:
                raise AssertionError(f"braid up {name} exited: {log.read_text()[-2000:]}")
            if time.monotonic() > end:
                raise AssertionError(f"braid up {name} not up: {log.read_text()[-2000:]}")
            time.sleep(0.05)
        return proc

    def spawn(self, ns: str, *cmd: str) -> subprocess.Popen[bytes]:
        """A background process in `ns` (stopped by close)."""
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, *cmd], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 10) -> int:
        """SIGTERM `proc` and wait; its exit code."""
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        return proc.returncode

    def log(self, name: str) -> str:
        return (self.dir / f"{name}.log").read_text(errors="replace")

    def close(self) -> None:
        for proc in reversed(self.procs):
            with contextlib.suppress(Exception):
                self.stop(proc)
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        self.namespaces.clear()
        shutil.rmtree(self.dir, ignore_errors=True)


def ping(
    lab: Lab, ns: str, dst: str, *, source: str | None = None, count: int = 1, wait: int = 2
) -> bool:
    """True if `dst` answers a ping from `ns`."""
    cmd = ["ping", "-n", "-q", "-c", str(count), "-W", str(wait)]
    if source:
        cmd += ["-I", source]
    return lab.ok(ns, *cmd, dst)


def eventually(check: Any, timeout: float = 10.0, interval: float = 0.2) -> bool:
    """True as soon as `check()` is; False after `timeout`."""
    end = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() > end:
            return False
        time.sleep(interval)
