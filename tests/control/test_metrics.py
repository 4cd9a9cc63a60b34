"""Prometheus /metrics: per-path and per-session series read from statistics() at scrape time."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from apiharness import Harness, request
from prometheus_client.parser import text_string_to_metric_families


@pytest.fixture(scope="module")
def harness() -> Iterator[Harness]:
    h = Harness()
    try:
        h.start_traffic()
        h.wait_session()
        yield h
    finally:
        h.stop()


def scrape(h: Harness, url: str) -> dict[str, list]:
    status, text, headers = request("GET", url + "/metrics", token=h.token)
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def test_metrics_need_the_token(harness: Harness) -> None:
    assert request("GET", harness.local_url + "/metrics")[0] == 401


def test_per_path_and_per_session_series(harness: Harness) -> None:
    families = scrape(harness, harness.local_url)
    sid = f"{harness.on_loop(lambda: harness.local.session.session_id):08x}"
    up = {s.labels["link"]: s for s in families["braid_path_up"]}
    assert set(up) == {"link0", "link1"}
    assert all(s.labels["session"] == sid for s in up.values())
    sent = [s for s in families["braid_path_sent_bytes"] if s.name.endswith("_total")]
    assert {s.labels["path"] for s in sent} == {"0", "1"}
    for name in ("braid_path_estimate_restarts", "braid_path_reprobes"):  # (clean links: 0)
        totals = [s for s in families[name] if s.name.endswith("_total")]
        assert sorted((s.labels["path"], s.value) for s in totals) == [("0", 0), ("1", 0)]
    # (The local portal's links have rates in the harness: nothing to fill.)
    fills = [s for s in families["braid_path_fill_bytes"] if s.name.endswith("_total")]
    assert sorted((s.labels["path"], s.value) for s in fills) == [("0", 0), ("1", 0)]
    assert families["braid_sessions"][0].value == 1
    assert families["braid_tun_queue_length"][0].value == 0  # in-memory TUN (the lab: 64/1000)
    nack = families["braid_session_nack_active"]  # "auto": 1 at first, 0 once clean
    assert [s.labels["session"] for s in nack] == [sid] and nack[0].value in (0, 1)
    fair = families["braid_session_fair_waiting_bytes"]  # (fair_queue off: none waits)
    assert [(s.labels["session"], s.value) for s in fair] == [(sid, 0)]
    first = next(s.value for s in families["braid_session_sent_bytes"] if s.name.endswith("_total"))
    time.sleep(0.3)
    again = scrape(harness, harness.local_url)
    second = next(s.value for s in again["braid_session_sent_bytes"] if s.name.endswith("_total"))
    assert second > first  # read live at scrape time, traffic is flowing


def test_remote_series_label_each_session(harness: Harness) -> None:
    families = scrape(harness, harness.remote_url)
    sids = {s.labels["session"] for s in families["braid_path_up"]}
    assert len(sids) == 1
    assert families["braid_portal_info"][0].labels["role"] == "remote"
    assert any(s.labels["reason"] for s in families["braid_session_drops"])
