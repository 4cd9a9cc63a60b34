"""One short scenario end to end through ``braid lab run``: links alone and MPTCP, with an event."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from braid.lab.cli import main
from braid.lab.netns import WORKDIR_PREFIX, list_netns, owner_alive, tag_of, workdir
from braid.lab.traffic import IperfNoStart, TrafficSpec, parse_iperf

pytestmark = pytest.mark.root

SCENARIO = """
duration = 4
interval = 0.5
series = ["links", "mptcp"]
traffic = "tcp"
direction = "down"
cc = "cubic"

[[link]]
rate = "10mbit"
delay = "5ms"

[[link]]
rate = "20mbit"
delay = "10ms"

[[event]]
at = 2
link = 2
set = { rate = "5mbit" }
"""


@pytest.mark.level
def test_short_scenario_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = set(list_netns())
    path = tmp_path / "short.toml"
    path.write_text(SCENARIO)
    out_json, out_png = tmp_path / "r.json", tmp_path / "r.png"
    code = main(["run", str(path), "--json", str(out_json), "--plot", str(out_png)])
    printed = capsys.readouterr().out
    print(printed)
    assert code == 0
    assert "efficiency" in printed and "cubic" in printed
    data = json.loads(out_json.read_text())
    series = data["series"]
    assert list(series) == ["link-1", "link-2", "mptcp"]
    link1, link2, mptcp = (series[n] for n in ("link-1", "link-2", "mptcp"))
    # Link 1 alone runs at its rate; link 2 drops from 20 to 5 Mbit/s half way.
    assert link1["mbps"] == pytest.approx(10 * 0.956, rel=0.1)
    samples = link2["runs"][0]["samples"]
    early = [v for t, v in samples if t <= 2.0]
    late = [v for t, v in samples if t >= 3.0]
    assert max(early) > 15 and max(late) < 7
    assert mptcp["mbps"] > link1["mbps"] * 1.2  # MPTCP used more than one link
    run = link1["runs"][0]
    assert set(run) == {"mbps", "samples", "retransmits", "ping_ms", "host"}
    # (how faithful the lab was: the machine's CPU use and steal, the emulator's lateness)
    assert set(run["host"]) >= {"cpu_percent", "steal_percent", "emulator_late_ms"}
    assert 0 < run["host"]["cpu_percent"] < 100 and run["host"]["emulator_late_ms"] < 20
    assert run["ping_ms"]["p50"] >= 10.0  # 2 x 5 ms one way, plus queueing under load
    assert out_png.read_bytes()[:4] == b"\x89PNG"
    assert not ours(set(list_netns()) - before)  # everything removed


FALL = """
duration = 6
interval = 0.5
repeat = 2
series = ["braid"]
traffic = "tcp"
direction = "up"
cc = "bbr"

[[link]]
rate = "20mbit"
delay = "10ms"

[[link]]
rate = "40mbit"
delay = "30ms"

[[event]]
at = 3
link = 2
set = { rate = "10mbit" }
"""


@pytest.mark.level
def test_each_run_after_an_event_starts_with_fresh_portals(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The first run's fall (link 2 to 10 Mbit/s) is undone between runs behind the
    tunnel's back. With the same portals the second run started over a link the tunnel
    believed at 10 Mbit/s, and a BBR flow climbed for 4-6 s (26-27 Mbit/s at first,
    against 54; since the controller probes an idle path again, 0.25-0.75 s); fresh
    portals give every run the same start."""
    path = tmp_path / "fall.toml"
    path.write_text(FALL)
    out_json = tmp_path / "r.json"
    code = main(["run", str(path), "--json", str(out_json)])
    captured = capsys.readouterr()
    printed = captured.out + captured.err
    print(printed)
    assert code == 0
    assert printed.count("braid: starting both portals") == 2
    first, second = json.loads(out_json.read_text())["series"]["braid"]["runs"]
    start = [[v for t, v in run["samples"] if 1.0 <= t <= 2.5] for run in (first, second)]
    assert min(start[0]) > 40  # (the links' sum: 57 Mbit/s)
    assert sum(start[1]) / len(start[1]) >= 0.8 * sum(start[0]) / len(start[0])


VOICE = """
duration = 4
series = ["link-1"]
traffic = "udp:80kbit:200"
direction = "up"

[[link]]
rate = "10mbit"
delay = "5ms"

[[event]]
at = 1.0
link = 1
set = { loss = "10%", loss_burst = 4 }
"""


@pytest.mark.level
def test_voice_udp_reports_receiver_loss(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """50 x 200-byte datagrams/s; bursty loss from 1 s (after iperf3's UDP handshake, which
    it never resends; a run whose iperf3 hangs or fails anyway is tried again): the run
    prints and records the receiver's lost/total datagrams."""
    path = tmp_path / "voice.toml"
    path.write_text(VOICE)
    out_json = tmp_path / "v.json"
    code = main(["run", str(path), "--json", str(out_json)])
    printed = capsys.readouterr().out
    print(printed)
    assert code == 0
    assert "lost %" in printed and "datagrams)" in printed
    run = json.loads(out_json.read_text())["series"]["link-1"]["runs"][0]
    print(run["lost_percent"], run["lost_packets"], run["packets"])
    assert 180 <= run["packets"] <= 220  # 50 a second for 4 s (a failed try would be 0)
    assert 0 < run["lost_packets"] < run["packets"] * 0.3
    # iperf3's own figures: its percentage is sometimes taken over the datagrams the
    # client sent, a few more than the receiver's total (11 of 197 came with 5.5 %, 22
    # of 195 with 11.0 %: over 200 both times). Either base is right.
    lost, total = run["lost_packets"], run["packets"]
    assert 100 * lost / (total + 10) - 0.25 <= run["lost_percent"] <= 100 * lost / total + 0.25
    # The rate is the receiver's bytes over the receiver's own clock. On a loaded machine
    # (CI) that clock once ran 2 s longer than the 4 s sent (0.050 Mbit/s for 182 of 196
    # datagrams, with a 2 s gap in the samples), so the lower bound is loose; the upper
    # bound still tells the receiver's figure from the sender's 0.08.
    expected = 0.08 * (1 - run["lost_percent"] / 100)
    assert 0.4 * expected <= run["mbps"] <= 1.1 * expected, run["samples"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_iperf3_run_that_never_started_is_an_error_not_zero() -> None:
    """Real iperf3 failures before any data: both reports carry an "end" (empty), which
    once read as a 0 Mbit/s run (a CI retry after a hung UDP run "measured" 0.000)."""
    port = _free_port()
    udp = TrafficSpec.parse("udp:80kbit:200")
    client = ["iperf3", "-c", "127.0.0.1", "-p", str(port), "-J", "-u", "-b", "80k"]
    refused = subprocess.run(
        [*client, "-t", "1", "--connect-timeout", "500"], capture_output=True, text=True
    )
    with pytest.raises(IperfNoStart, match="unable to connect"):
        parse_iperf(json.loads(refused.stdout), direction="up", traffic=udp)
    server = subprocess.Popen(
        ["iperf3", "-s", "-p", str(port), "-B", "127.0.0.1"], stdout=subprocess.DEVNULL
    )
    first: subprocess.Popen[str] | None = None
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # until it listens (`ss`: a probing connection
            # is a client that sends no parameters, and the server's error about it raced
            # the first client on a slow machine)
            listening = subprocess.run(
                ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True
            )
            if listening.stdout.strip():
                break
            time.sleep(0.05)
        first = subprocess.Popen(
            [*client, "-t", "5"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        time.sleep(1.5)
        busy = subprocess.run([*client, "-t", "1"], capture_output=True, text=True, timeout=20)
        with pytest.raises(IperfNoStart, match="busy"):
            parse_iperf(json.loads(busy.stdout), direction="up", traffic=udp)
        # (the refused client also stops the server's running UDP test: the first client's
        # report then counts 1 datagram received; iperf3 3.12, not checked here)
    finally:
        for proc in (first, server):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_interrupted_run_removes_everything(tmp_path: Path, sig: signal.Signals) -> None:
    path = tmp_path / "long.toml"
    path.write_text('duration = 30\nseries = ["link-1"]\n[[link]]\nrate = "5mbit"\n')
    # A shell without job control starts background jobs with SIGINT ignored, and Python
    # then installs no KeyboardInterrupt handler; when the suite itself ran that way, the
    # run ignored the SIGINT (exit 0 after its 30 s). Give the run SIGINT's default
    # disposition, as it has when typed at a terminal.
    proc = subprocess.Popen(
        [sys.executable, "-m", "braid.lab", "run", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
    )
    try:
        tag = None
        deadline = time.monotonic() + 20
        while tag is None and time.monotonic() < deadline:
            tag = next((t for t in lab_tags() if owner_pid(t) == proc.pid), None)
            time.sleep(0.1)
        assert tag is not None, "the lab never started"
        time.sleep(2.0)  # traffic is running now
        names = [n for n in list_netns() if tag_of(n) == tag]
        assert len(names) == 5
        inodes = {os.stat(f"/run/netns/{name}").st_ino for name in names}
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, f"stdout: {out[-2000:]}\nstderr: {err[-2000:]}"
    assert err.strip() == "braid lab: interrupted; lab removed"
    assert not set(names) & set(list_netns())
    assert not workdir(tag).exists()
    assert not processes_in(inodes)


def lab_tags() -> list[str]:
    """Tags of the lab runs that have a work folder now."""
    return [
        p.name[len(WORKDIR_PREFIX) :]
        for p in Path(tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*")
    ]


def owner_pid(tag: str) -> int | None:
    try:
        return int((workdir(tag) / "owner.pid").read_text())
    except (OSError, ValueError):
        return None


def ours(names: set[str]) -> list[str]:
    """The namespaces among ``names`` not owned by another lab that is still running."""
    return [n for n in names if not owner_alive(tag_of(n))]


def processes_in(inodes: set[int]) -> list[int]:
    """Pids of processes still living in the network namespaces with these nsfs inodes."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.stat(entry / "ns" / "net").st_ino in inodes:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids
