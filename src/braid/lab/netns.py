"""Network namespaces and the few shell tools the lab drives (ip, tc, nft, ethtool, sysctl).

Every lab object is named with the prefix ``blab-`` followed by a short random tag, so two
labs at once never collide and ``braid lab clean`` can find the leftovers of earlier runs.
Failures of the tools become ``LabError`` with one line saying what failed.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

PREFIX = "blab-"
WORKDIR_PREFIX = "braid-lab-"

REQUIRED_TOOLS = {
    "ip": "apt-get install -y iproute2",
    "tc": "apt-get install -y iproute2",
    "nft": "apt-get install -y nftables",
    "ethtool": "apt-get install -y ethtool",
    "sysctl": "apt-get install -y procps",
    "iperf3": "apt-get install -y iperf3",
}
MPTCP_TOOLS = {"mptcpize": "apt-get install -y mptcpize mptcpd"}


class LabError(Exception):
    """A lab failure with a one-line message meant for the user."""


class LabSetupError(LabError):
    """The machine cannot run the lab (not root, a tool missing): exit code 2."""


def new_tag() -> str:
    """Return a short random tag naming one lab run (6 hex digits)."""
    return secrets.token_hex(3)


def check_environment(*, mptcp: bool = False) -> None:
    """Raise LabError (one line, says what to do) unless the lab can run here."""
    if os.geteuid() != 0:
        raise LabSetupError("needs root (network namespaces): run it with sudo")
    tools = dict(REQUIRED_TOOLS)
    if mptcp:
        tools.update(MPTCP_TOOLS)
    missing = [name for name in tools if shutil.which(name) is None]
    if missing:
        fixes = sorted({tools[name] for name in missing})
        raise LabSetupError(f"needs {', '.join(missing)}: install with {'; '.join(fixes)}")


def run(
    cmd: Sequence[str],
    *,
    input: str | None = None,
    check: bool = True,
    timeout: float = 30.0,
) -> str:
    """Run a command and return its stdout; raise LabError naming the command on failure."""
    try:
        proc = subprocess.run(
            list(cmd),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        raise LabError(f"{cmd[0]} is not installed") from exc
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"{' '.join(cmd)} timed out after {timeout:g} s") from exc
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        reason = detail[-1] if detail else f"exit code {proc.returncode}"
        raise LabError(f"{' '.join(cmd)}: {reason}")
    return proc.stdout


def ns_cmd(ns: str, cmd: Sequence[str]) -> list[str]:
    """Return the argv that runs ``cmd`` inside namespace ``ns``."""
    return ["ip", "netns", "exec", ns, *cmd]


def python_cmd(module: str, *args: str) -> list[str]:
    """Return the argv that runs ``python -m module args`` with this interpreter."""
    return [sys.executable, "-m", module, *args]


def list_netns(prefix: str = PREFIX) -> list[str]:
    """Return the names of the network namespaces whose name starts with ``prefix``."""
    names: list[str] = []
    for line in run(["ip", "netns", "list"]).splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith(prefix):
            names.append(name)
    return names


def add_netns(name: str) -> None:
    """Create a network namespace with its loopback up."""
    run(["ip", "netns", "add", name])
    run(["ip", "-n", name, "link", "set", "lo", "up"])


def netns_pids(name: str) -> list[int]:
    """Return the pids of the processes running in namespace ``name``."""
    out = run(["ip", "netns", "pids", name], check=False)
    return [int(word) for word in out.split() if word.isdigit()]


def kill_netns_processes(name: str, *, grace: float = 2.0) -> None:
    """Terminate (then kill) every process still running in namespace ``name``."""
    pids = netns_pids(name)
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline:
        time.sleep(0.05)
        pids = [pid for pid in pids if _alive(pid)]
    for pid in pids:
        _signal(pid, signal.SIGKILL)


def del_netns(name: str) -> None:
    """Delete a namespace after stopping its processes (its interfaces go with it)."""
    kill_netns_processes(name)
    run(["ip", "netns", "del", name], check=False)


def sysctl(ns: str, settings: dict[str, str]) -> None:
    """Set sysctls inside namespace ``ns`` (one process for all of them)."""
    args = [f"{key}={value}" for key, value in settings.items()]
    run(ns_cmd(ns, ["sysctl", "-q", "-w", *args]))


def workdir(tag: str) -> Path:
    """Return the work folder of lab run ``tag`` (configs, logs, the owner's pid)."""
    return Path(tempfile.gettempdir()) / f"{WORKDIR_PREFIX}{tag}"


def tag_of(name: str, prefix: str = PREFIX) -> str:
    """Return the run tag of a lab namespace name (``blab-1a2b3c-lp`` -> ``1a2b3c``)."""
    return name[len(prefix) :].split("-", 1)[0]


def owner_alive(tag: str) -> bool:
    """Tell whether the process that owns lab run ``tag`` is still running."""
    try:
        pid = int((workdir(tag) / "owner.pid").read_text().strip())
    except (OSError, ValueError):
        return False
    return pid != os.getpid() and _alive(pid)


def clean(prefix: str = PREFIX) -> tuple[list[str], list[str]]:
    """Remove what earlier lab runs left behind: namespaces, their processes, work folders.

    Returns (removed namespaces, namespaces kept because their lab is still running).
    """
    removed: list[str] = []
    kept: list[str] = []
    for name in list_netns(prefix):
        if owner_alive(tag_of(name, prefix)):
            kept.append(name)
            continue
        del_netns(name)
        removed.append(name)
    for folder in Path(tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*"):
        if not owner_alive(folder.name[len(WORKDIR_PREFIX) :]):
            shutil.rmtree(folder, ignore_errors=True)
    return removed, kept


def host_cpu_ticks() -> tuple[int, int, int] | None:
    """The machine's CPU time so far, in clock ticks of all CPUs together: (busy, steal,
    total) from /proc/stat, or None if it cannot be read. Steal is the time a hypervisor
    gave this machine's CPUs to someone else while they had work: a lab run during which
    it is high measured a slower machine than the one it ran on."""
    try:
        first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
        ticks = [int(v) for v in first[1:9]]
    except (OSError, ValueError, IndexError):
        return None
    if first[0] != "cpu" or len(ticks) < 8:
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = ticks
    busy = user + nice + system + irq + softirq
    return busy, steal, busy + idle + iowait + steal


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) used so far by process ``pid``, or None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
