"""`braid status` / `show` / `set` over a running portal's API (real HTTP, in-memory portals)."""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from apiharness import CONFIG, Harness

from braid.control.cli import _equalize_text, main
from braid.core.equalize import END_REASONS
from braid.core.session import SessionConfig


@pytest.fixture(scope="module")
def harness() -> Iterator[Harness]:
    h = Harness()
    try:
        h.start_traffic(interval=0.01, burst=4)
        h.wait_session()
        yield h
    finally:
        h.stop()


def braid(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def api(h: Harness, url: str) -> list[str]:
    return ["--api", url, f"--token={h.token}"]


def test_show_lists_sessions_and_paths(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = braid(capsys, "show", *api(harness, harness.local_url))
    assert code == 0, err
    sid = harness.on_loop(lambda: f"{harness.local.session.session_id:08x}")
    assert "portal: local" in out
    assert f"session: {sid}" in out
    assert "link0" in out and "link1" in out
    assert "198.51.100.1:7100" in out
    # egress delay equalization, "bulk" by default: no flow is marked on an idle session
    assert re.search(r"equalize bulk \(\+\d+ ms, \d+ held; 0 flows marked\)", out), out
    assert "TCP MSS clamping: off" in out  # (the core's default; a portal sets MTU - 40)
    # NACK recovery, "auto" by default: on at a session's start, off after 3 clean s over the
    # harness's sockets, which lose nothing.
    assert re.search(
        r"loss recovery: auto, (on|off) now; \d+ losses recovered here, \d+ packets resent",
        out,
    ), out
    code, out, _ = braid(capsys, "status", *api(harness, harness.remote_url))
    assert code == 0
    assert "portal: remote" in out and sid in out and "10.1.0.2" in out


def test_show_json(harness: Harness, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = braid(capsys, "show", "--json", *api(harness, harness.remote_url))
    assert code == 0
    doc = json.loads(out)
    assert doc["portal"]["role"] == "remote" and len(doc["sessions"]) == 1
    session = doc["sessions"][0]
    assert session["parameters"]["equalize"] == "bulk"
    assert session["parameters"]["peer_holds"] is True  # FEATURES from the local portal
    assert session["parameters"]["equalize_delay"] == 0.0
    assert session["counters"]["equalized"] == 0
    assert session["counters"]["equalize_trials"] == 0
    assert session["counters"]["equalize_flows"] == 0
    assert session["counters"]["equalize_ahead"] == 0
    assert session["counters"]["equalize_pairs"] == session["counters"]["equalize_paired"] == 0
    assert session["counters"]["equalize_ends"] == dict.fromkeys(END_REASONS, 0)
    assert session["parameters"]["clamp_mss"] == 0 and session["counters"]["mss_clamped"] == 0
    # ACK filtering, on by default (the harness's traffic is UDP: none filtered).
    assert session["parameters"]["ack_filter"] is True
    assert session["counters"]["acks_filtered"] == 0
    # Fair queueing, off by default: nothing waits in flow queues.
    assert session["parameters"]["fair_queue"] is False
    assert session["counters"]["fair_waiting"] == 0 and session["counters"]["fair_flows"] == 0
    # Sparse priority, on by default (the harness's light flows: sparse, jumping no queue
    # beyond the paths' share).
    assert session["parameters"]["sparse_priority"] is True
    assert session["counters"]["sparse_queued"] == 0
    # Rate probing, on by default: the remote portal's paths have no download rate (the
    # harness gives none), so it fills them once the local portal's FEATURES are in; each
    # path counts the bytes.
    assert session["parameters"]["probe_rates"] is True
    assert all(isinstance(p["fill_bytes"], int) for p in session["paths"])
    for _ in range(50):
        _, later, _ = braid(capsys, "show", "--json", *api(harness, harness.remote_url))
        if sum(p["fill_bytes"] for p in json.loads(later)["sessions"][0]["paths"]) > 0:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"no fill PROBEs on the remote portal's paths: {later}")
    assert isinstance(session["counters"]["sparse_jumps"], int)
    # Header compression, on by default: the local portal said it takes it.
    assert session["parameters"]["compress_headers"] is True
    assert session["parameters"]["peer_compacts"] is True
    assert session["parameters"]["peer_trims"] is True
    assert session["parameters"]["peer_packs"] is True
    for name in ("compacted", "compact_saved", "compact_contexts", "expanded"):
        assert isinstance(session["counters"][name], int)
    # Loss recovery by default: "auto" (on at a session's start, then while the
    # paths lose: tests/core/test_nack.py).
    assert session["parameters"]["nack"] == "auto"
    assert session["parameters"]["nack_active"] in (True, False)


def _show_local(capsys: pytest.CaptureFixture[str], **settings: Any) -> str:
    """`braid show` of a local portal with these session settings, under traffic."""
    h = Harness(local_config=dataclasses.replace(CONFIG, **settings))
    try:
        h.start_traffic(interval=0.01, burst=4)
        h.wait_session()
        code, out, err = braid(capsys, "show", *api(h, h.local_url))
    finally:
        h.stop()
    assert code == 0, err
    return out


def test_show_names_equalization_when_off(capsys: pytest.CaptureFixture[str]) -> None:
    """With `equalize = "off"` `braid show` says so, without the held and marked counts."""
    out = _show_local(capsys, equalize="off")
    assert "equalize off" in out and "flows marked" not in out, out


def test_show_counts_flows_marked_ahead_only_once_there_are_some() -> None:
    """The "bulk" line names the flows marked ahead of their first PROBE_RTT (a lab
    condition the harness cannot make) once there are any, and stays short before."""
    params = {"equalize": "bulk", "equalize_delay": 0.035}
    counters = {"equalized": 812, "equalize_flows": 1, "equalize_ahead": 0}
    assert _equalize_text(params, counters) == ", equalize bulk (+35 ms, 812 held; 1 flows marked)"
    counters["equalize_ahead"] = 2
    assert _equalize_text(params, counters) == (
        ", equalize bulk (+35 ms, 812 held; 1 flows marked, 2 ahead of PROBE_RTT so far)"
    )
    counters.update(equalize_ahead=0, equalize_pairs=1, equalize_paired=3)
    assert _equalize_text(params, counters) == (
        ", equalize bulk (+35 ms, 812 held; 1 flows marked;"
        " 1 host pair remembered, 3 connections given ack)"
    )


def test_show_gives_the_mss_clamp(capsys: pytest.CaptureFixture[str]) -> None:
    """A portal with `clamp_mss` (as `braid up` sets it: MTU - 40) shows the value and
    how many SYNs it lowered (the harness's traffic is UDP: none)."""
    out = _show_local(capsys, clamp_mss=1360)
    assert "TCP MSS clamping: to 1360, 0 SYNs clamped" in out, out
    assert "ACK filtering: on, 0 acknowledgements replaced a queued one" in out, out
    assert "fair queueing: off" in out, out
    assert re.search(r"rate probing: on, [\d.]+ [kMG]?B of fill PROBEs sent to find", out), out
    assert re.search(
        r"sparse priority: on, \d+ packets went ahead of a queue, 0 queued \(the path's share "
        r"used\)",
        out,
    ), out


def test_show_gives_fair_queueing_when_on(capsys: pytest.CaptureFixture[str]) -> None:
    """With `fair_queue` on, `braid show` says how many flows wait in their own queues (the
    harness's light traffic never fills the paths: none)."""
    out = _show_local(capsys, fair_queue=True)
    assert re.search(r"fair queueing: on, \d+ flows waiting \(\d+ bytes\)", out), out


def test_show_says_when_the_peer_does_not_hold(capsys: pytest.CaptureFixture[str]) -> None:
    """A local portal with "bulk" and a remote with "off": the remote sends no FEATURES,
    so the local marks no flow, and `braid show` says why."""
    h = Harness(remote_config=dataclasses.replace(CONFIG, equalize="off"))
    try:
        h.start_traffic(interval=0.01, burst=4)
        h.wait_session()
        code, out, err = braid(capsys, "show", *api(h, h.local_url))
        code_json, out_json, _ = braid(capsys, "show", "--json", *api(h, h.remote_url))
    finally:
        h.stop()
    assert code == 0 and code_json == 0, err
    assert "flows marked; the peer does not hold: none marked)" in out, out
    # The remote portal heard the local's FEATURES: its egress would hold.
    assert json.loads(out_json)["sessions"][0]["parameters"]["peer_holds"] is True


def _show_under_bursts(
    capsys: pytest.CaptureFixture[str], remote_config: SessionConfig = CONFIG
) -> tuple[str, dict[str, Any]]:
    """`braid show` of the local portal and the remote's session (JSON) after 1.5 s of UDP
    both ways in bursts of 30 packets every 20 ms (they wait for the paths)."""
    h = Harness(remote_config=remote_config)
    try:
        h.start_traffic(interval=0.02, burst=30)
        h.wait_session()
        time.sleep(1.5)
        code, out, err = braid(capsys, "show", *api(h, h.local_url))
        code_json, out_json, _ = braid(capsys, "show", "--json", *api(h, h.remote_url))
    finally:
        h.stop()
    assert code == 0 and code_json == 0, err
    session: dict[str, Any] = json.loads(out_json)["sessions"][0]
    return out, session


def test_show_counts_compressed_headers(capsys: pytest.CaptureFixture[str]) -> None:
    """UDP both ways between portals that take compressed headers, in bursts that wait
    for the paths (compression runs only then): `braid show` counts the packets sent
    compressed and the bytes saved (22 per IPv4/UDP packet), and the remote's JSON the
    packets it rebuilt. Toward a remote with `compress_headers = false` (it does not take
    them) the local sends none and says why."""
    out, remote = _show_under_bursts(capsys)
    found = re.search(
        r"header compression: on, (\d+) packets sent compressed \(\d+ %\), ([\d.]+ \w+) saved;"
        r" (\d+) rebuilt",
        out,
    )
    assert found, out
    assert int(found[1]) > 50, out
    counters = remote["counters"]
    assert counters["expanded"] > 50  # (what the local sent compressed, rebuilt)
    assert counters["compact_saved"] == 22 * counters["compacted"]
    assert counters["drops"]["compact_miss"] == 0 and counters["drops"]["bad_compact"] == 0
    out, remote = _show_under_bursts(capsys, dataclasses.replace(CONFIG, compress_headers=False))
    assert "header compression: on; the peer does not take compressed headers: none sent" in out
    assert remote["parameters"]["compress_headers"] is False
    assert remote["counters"]["compacted"] == 0 and remote["counters"]["expanded"] == 0


def test_set_changes_apply(harness: Harness, capsys: pytest.CaptureFixture[str]) -> None:
    local = api(harness, harness.local_url)
    code, _, err = braid(capsys, "set", *local, "link", "link1", "metric", "9", "rate", "30mbit")
    assert code == 0, err
    paths = harness.on_loop(lambda: harness.local.session.inner.statistics().paths)
    assert (paths[1].metric, paths[1].rate_bps) == (9, 30_000_000)
    code, _, err = braid(capsys, "set", *local, "link", "link1", "download", "40mbit")
    assert code == 0, err
    paths = harness.on_loop(lambda: harness.local.session.inner.statistics().paths)
    assert paths[1].download_bps == 40_000_000
    code, out, err = braid(capsys, "show", "--json", *local)
    assert code == 0, err
    shown = json.loads(out)["sessions"][0]["paths"]
    assert [p["download_bps"] for p in shown if p["path_id"] == 1] == [40_000_000]
    code, _, err = braid(capsys, "set", *local, "scheduler", "hash")
    assert code == 0, err
    assert harness.on_loop(lambda: harness.local.session.inner.scheduler) == "hash"
    sid = harness.on_loop(lambda: f"{harness.local.session.session_id:08x}")
    code, _, err = braid(capsys, "set", *local, "scheduler", "weighted", "session", sid)
    assert code == 0, err
    assert harness.on_loop(lambda: harness.local.session.inner.scheduler) == "weighted"
    code, out, err = braid(capsys, "set", *local, "class", "voice", "scheduler", "redundant")
    assert code == 0 and out.strip() == "class voice scheduler redundant", err
    assert harness.on_loop(lambda: harness.local.session.inner.config.classes[0].scheduler) == (
        "redundant"
    )
    code, _, err = braid(capsys, "set", *local, "class", "voice", "scheduler", "default")
    assert code == 0, err
    assert harness.on_loop(lambda: harness.local.session.inner.config.classes[0].scheduler) is None
    code, _, err = braid(capsys, "set", *local, "class", "video", "scheduler", "hash")
    assert code != 0 and "video" in err and "Traceback" not in err
    code, _, err = braid(
        capsys, "set", *local, "link", "add", "lte", "remote", "198.51.100.1:7100", "rate", "5mbit"
    )
    assert code == 0, err
    assert harness.on_loop(lambda: harness.local.session.path_ids()) == (0, 1, 2)
    code, _, err = braid(capsys, "set", *local, "link", "remove", "lte")
    assert code == 0, err
    sid = harness.on_loop(
        lambda: f"{harness.remote.sessions and next(iter(harness.remote.sessions)):08x}"
    )
    code, _, err = braid(
        capsys, "set", *api(harness, harness.remote_url), "path", sid, "0", "metric", "4"
    )
    assert code == 0, err
    metric = harness.on_loop(
        lambda: next(iter(harness.remote.sessions.values())).inner.statistics().paths[0].metric
    )
    assert metric == 4


@pytest.mark.parametrize(
    ("argv", "code", "needle"),
    [
        (["set", "link", "link0", "metric", "x"], 2, "not an integer"),
        (["set", "link", "link0"], 2, "nothing to change"),
        (["set", "link", "nope", "metric", "1"], 1, "no such link"),
        (["set", "frobnicate"], 2, "unknown 'frobnicate'"),
        (["set", "link", "link0", "rate", "fast"], 2, "not a rate"),
        (["set", "scheduler", "bogus"], 1, "unknown"),
    ],
)
def test_set_errors_are_one_line(
    harness: Harness, capsys: pytest.CaptureFixture[str], argv: list[str], code: int, needle: str
) -> None:
    got, _, err = braid(capsys, argv[0], *api(harness, harness.local_url), *argv[1:])
    assert got == code
    assert err.count("\n") == 1 and needle in err, err


def test_unreachable_and_unconfigured(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = braid(capsys, "status", "--api", "http://127.0.0.1:9", "--token", "t" * 16)
    assert code == 1 and "cannot reach the API" in err and err.count("\n") == 1
    code, _, err = braid(capsys, "status", "--api", "http://127.0.0.1:9")
    assert code == 2 and "--token" in err
    code, _, err = braid(capsys, "show")
    assert code == 2 and "CONFIG" in err
    code, _, err = braid(capsys, "show", str(tmp_path / "missing.toml"))
    assert code == 2 and "no such file" in err


def test_wrong_token(harness: Harness, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = braid(capsys, "show", "--api", harness.local_url, "--token", "x" * 20)
    assert code == 1 and "wrong token" in err


def test_set_param(harness: Harness, capsys: pytest.CaptureFixture[str]) -> None:
    local = api(harness, harness.local_url)
    sid = harness.on_loop(lambda: f"{harness.local.session.session_id:08x}")
    code, _, err = braid(capsys, "set", *local, "param", "bod_upper", "0.7", "session", sid)
    assert code == 0, err
    assert harness.on_loop(lambda: harness.local.session.inner.config.bod_upper) == 0.7
    code, _, err = braid(capsys, "set", *local, "param", "dead_interval", "x")
    assert code == 2 and "not a number" in err
