"""The REST API over real portals (in-memory drivers): reads, run-time changes, errors, auth."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from apiharness import CONFIG, Harness, request


@pytest.fixture(scope="module")
def harness() -> Iterator[Harness]:
    h = Harness()
    try:
        h.start_traffic()
        h.wait_session()
        yield h
    finally:
        h.stop()


def get(h: Harness, url: str, path: str) -> dict:
    status, body, _ = request("GET", url + path, token=h.token)
    assert status == 200, body
    return body


def patch(h: Harness, url: str, path: str, body: dict) -> tuple[int, dict]:
    """PATCH `body` to `url + path` with the harness's token: (status, answer)."""
    status, answer, _ = request("PATCH", url + path, token=h.token, body=body)
    return status, answer


def wait_for(condition, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError("condition not reached")
        time.sleep(0.05)


def test_schema_served_without_token(harness: Harness) -> None:
    status, schema, _ = request("GET", harness.local_url + "/openapi.json")
    assert status == 200
    assert schema["openapi"].startswith("3.")
    assert "/api/v1/sessions/{session_id}/paths/{path_id}" in schema["paths"]


@pytest.mark.parametrize(
    ("header", "message"),
    [(None, "missing"), ("Bearer wrong", "wrong token"), ("Basic x", "wrong")],
)
def test_auth_required(harness: Harness, header: str | None, message: str) -> None:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(harness.local_url + "/api/v1/sessions")
    if header:
        req.add_header("Authorization", header)
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=5)
    assert info.value.code == 401
    assert info.value.headers["WWW-Authenticate"].startswith("Bearer")
    import json

    assert message in json.loads(info.value.read())["error"]["message"]


def test_session_table_on_both_portals(harness: Harness) -> None:
    wait_for(
        lambda: all(
            p["state"] == "up"
            for p in get(harness, harness.remote_url, "/api/v1/sessions")["sessions"][0]["paths"]
        )
    )
    remote = get(harness, harness.remote_url, "/api/v1/sessions")["sessions"]
    local = get(harness, harness.local_url, "/api/v1/sessions")["sessions"]
    assert len(remote) == len(local) == 1
    assert remote[0]["session_id"] == local[0]["session_id"]
    assert local[0]["peer"] == "198.51.100.1:7100"
    assert remote[0]["peer"] in ("192.0.2.2:40000", "203.0.113.2:40001")
    assert {p["endpoint"].split(":")[0] for p in remote[0]["paths"]} >= {"192.0.2.2", "203.0.113.2"}
    assert remote[0]["egress"] == ["10.1.0.2"]  # the site address the remote learned
    assert remote[0]["counters"]["packets_delivered"] > 0
    assert [p["name"] for p in local[0]["paths"][:2]] == ["link0", "link1"]
    one = get(harness, harness.remote_url, f"/api/v1/sessions/{remote[0]['session_id']}")
    assert one["session_id"] == remote[0]["session_id"]
    portal = get(harness, harness.remote_url, "/api/v1/portal")
    assert portal["role"] == "remote" and portal["sessions"] == 1
    assert portal["tun_queue_length"] == 0  # (an in-memory TUN; the lab checks a real one)
    # All paths up: early drop is on as configured (the lab checks it going quiet).
    assert local[0]["early_drop_active"] is remote[0]["early_drop_active"] is True
    assert CONFIG.early_drop > 0
    stats = get(harness, harness.local_url, "/api/v1/statistics")
    assert stats["sessions"][0]["paths"][0]["name"] == "link0"


def test_path_metric_and_rate_change_reaches_the_session(harness: Harness) -> None:
    sid = get(harness, harness.local_url, "/api/v1/sessions")["sessions"][0]["session_id"]
    status, body = patch(
        harness,
        harness.local_url,
        f"/api/v1/sessions/{sid}/paths/1",
        {"metric": 7, "rate_bps": 5_000_000},
    )
    assert status == 200, body
    assert body["metric"] == 7 and body["rate_bps"] == 5_000_000
    # The core session itself carries the change (not only the API's view).
    paths = harness.on_loop(lambda: harness.local.session.inner.statistics().paths)
    assert (paths[1].metric, paths[1].rate_bps) == (7, 5_000_000)
    status, body = patch(
        harness, harness.local_url, "/api/v1/links/link1", {"rate_bps": None, "metric": 0}
    )
    assert status == 200 and body["rate_bps"] is None and body["metric"] == 0


def test_link_download_rate_and_metric_reach_the_remote_portal(harness: Harness) -> None:
    """PATH_INFO: a link's metric and download rate, changed on the local portal, are
    applied by the remote portal to its side of the path (its sending rate hint)."""
    sid = harness.wait_session()
    status, body = patch(
        harness, harness.local_url, "/api/v1/links/link1", {"download_bps": 8_000_000, "metric": 3}
    )
    assert status == 200, body
    assert body["download_bps"] == 8_000_000
    paths = harness.on_loop(lambda: harness.local.session.inner.statistics().paths)
    assert paths[1].download_bps == 8_000_000

    def remote_path() -> tuple[int, int | None, str]:
        session = next(iter(harness.remote.sessions.values())).inner.statistics()
        path = next(p for p in session.paths if p.path_id == 1)
        return path.metric, path.rate_bps, path.congestion

    wait_for(lambda: harness.on_loop(remote_path)[:2] == (3, 8_000_000))
    assert harness.on_loop(remote_path) == (3, 8_000_000, "bbr probe_bw")
    remote = get(harness, harness.remote_url, f"/api/v1/sessions/{sid}")
    assert [p["rate_bps"] for p in remote["paths"] if p["path_id"] == 1] == [8_000_000]
    # The remote portal's own sending hint is rate_bps; download_bps belongs to the site.
    status, body = patch(
        harness, harness.remote_url, f"/api/v1/sessions/{sid}/paths/1", {"download_bps": 1_000_000}
    )
    assert status == 409 and "download_bps" in body["error"]["message"], body
    status, body = patch(harness, harness.local_url, "/api/v1/links/link1", {"download_bps": None})
    assert status == 200 and body["download_bps"] is None


def test_scheduler_change(harness: Harness) -> None:
    status, body, _ = request(
        "PATCH",
        harness.remote_url + "/api/v1/policies",
        token=harness.token,
        body={"scheduler": "hash"},
    )
    assert status == 200 and body["scheduler"] == "hash"
    assert harness.on_loop(
        lambda: [s.inner.scheduler for s in harness.remote.sessions.values()]
    ) == ["hash"]
    assert harness.on_loop(lambda: harness.remote.session_config.scheduler) == "hash"
    status, body, _ = request(
        "PATCH",
        harness.remote_url + "/api/v1/policies",
        token=harness.token,
        body={"scheduler": "nope"},
    )
    assert status == 422 and "scheduler" in body["error"]["message"]


def test_class_scheduler_change(harness: Harness) -> None:
    def class_schedulers() -> list[str | None]:
        return harness.on_loop(
            lambda: [
                c.scheduler
                for s in harness.remote.sessions.values()
                for c in s.inner.config.classes
            ]
        )

    assert class_schedulers() == [None]
    url = harness.remote_url + "/api/v1/policies"
    status, body, _ = request(
        "PATCH", url, token=harness.token, body={"classes": {"voice": {"scheduler": "redundant"}}}
    )
    assert status == 200, body
    assert [(c["name"], c["scheduler"]) for c in body["classes"]] == [("voice", "redundant")]
    assert class_schedulers() == ["redundant"]
    # New sessions get it too.
    assert harness.on_loop(lambda: harness.remote.session_config.classes[0].scheduler) == (
        "redundant"
    )
    status, body, _ = request(
        "PATCH", url, token=harness.token, body={"classes": {"voice": {"scheduler": None}}}
    )
    assert status == 200 and class_schedulers() == [None]
    status, body, _ = request(
        "PATCH", url, token=harness.token, body={"classes": {"video": {"scheduler": "hash"}}}
    )
    assert status == 404 and "video" in body["error"]["message"]
    status, body, _ = request(
        "PATCH", url, token=harness.token, body={"classes": {"voice": {"scheduler": "nope"}}}
    )
    assert status == 422 and "voice" in body["error"]["message"]
    assert class_schedulers() == [None]


def test_disable_enable_add_remove_link(harness: Harness) -> None:
    url = harness.local_url
    status, body, _ = request(
        "PATCH", url + "/api/v1/links/link1", token=harness.token, body={"enabled": False}
    )
    assert status == 200 and body["state"] == "disabled"
    assert harness.on_loop(lambda: harness.local.session.path_ids()) == (0,)
    # The remote portal hears PATH_DOWN and stops using the path.
    wait_for(
        lambda: (
            [
                p["path_id"]
                for p in get(harness, harness.remote_url, "/api/v1/sessions")["sessions"][0][
                    "paths"
                ]
            ]
            == [0]
        )
    )
    status, body, _ = request(
        "PATCH", url + "/api/v1/links/link1", token=harness.token, body={"enabled": True}
    )
    assert status == 200 and body["enabled"] is True
    assert harness.on_loop(lambda: harness.local.session.path_ids()) == (0, 1)

    status, body, _ = request(
        "POST",
        url + "/api/v1/links",
        token=harness.token,
        body={"name": "extra", "remote": "198.51.100.1:7100", "metric": 3, "rate_bps": 2_000_000},
    )
    assert status == 201, body
    pid = body["path_id"]
    assert pid == 2
    wait_for(lambda: get(harness, url, "/api/v1/links/extra")["state"] == "up")
    wait_for(
        lambda: (
            len(get(harness, harness.remote_url, "/api/v1/sessions")["sessions"][0]["paths"]) == 3
        )
    )
    status, body, _ = request(
        "POST",
        url + "/api/v1/links",
        token=harness.token,
        body={"name": "extra", "remote": "198.51.100.1:7100"},
    )
    assert status == 409 and "already exists" in body["error"]["message"]
    status, _, _ = request("DELETE", url + "/api/v1/links/extra", token=harness.token)
    assert status == 204
    assert harness.on_loop(lambda: harness.local.session.path_ids()) == (0, 1)
    status, body, _ = request("GET", url + "/api/v1/links/extra", token=harness.token)
    assert status == 404


def test_remote_has_no_links_to_add(harness: Harness) -> None:
    status, body, _ = request(
        "POST",
        harness.remote_url + "/api/v1/links",
        token=harness.token,
        body={"name": "x", "remote": "1.2.3.4:5"},
    )
    assert status == 409 and "local portal" in body["error"]["message"]


@pytest.mark.parametrize(
    ("method", "path", "body", "raw", "status", "needle"),
    [
        ("GET", "/api/v1/sessions/zzzz", None, None, 404, "not a session id"),
        ("GET", "/api/v1/sessions/00000000", None, None, 404, "no such session"),
        ("GET", "/api/v1/nothing", None, None, 404, "not found"),
        ("PUT", "/api/v1/sessions", None, None, 405, "not allowed"),
        ("PATCH", "/api/v1/links/link0", None, b"{not json", 400, "not valid JSON"),
        ("PATCH", "/api/v1/links/link0", [1], None, 400, "expected a JSON object"),
        ("PATCH", "/api/v1/links/link0", {"metric": -1}, None, 422, "metric"),
        ("PATCH", "/api/v1/links/link0", {"metric": "x"}, None, 422, "not an integer"),
        ("PATCH", "/api/v1/links/link0", {"bogus": 1}, None, 422, "unknown field"),
        ("PATCH", "/api/v1/links/link0", {"rate_bps": 5}, None, 422, "rate_bps"),
        ("POST", "/api/v1/links", {"name": "n", "remote": "nohost"}, None, 422, "remote"),
        ("POST", "/api/v1/links", {"name": "bad name!", "remote": "1.2.3.4:5"}, None, 422, "name"),
        ("DELETE", "/api/v1/links/missing", None, None, 404, "no such link"),
    ],
)
def test_errors_are_json(harness, method, path, body, raw, status, needle) -> None:  # type: ignore[no-untyped-def]
    got, doc, headers = request(
        method, harness.local_url + path, token=harness.token, body=body, raw=raw
    )
    assert got == status, doc
    assert headers["Content-Type"].startswith("application/json")
    assert doc["error"]["status"] == status
    assert needle in doc["error"]["message"]


def test_cannot_disable_last_link(harness: Harness) -> None:
    url = harness.local_url
    assert (
        request("PATCH", url + "/api/v1/links/link1", token=harness.token, body={"enabled": False})[
            0
        ]
        == 200
    )
    try:
        status, body, _ = request(
            "PATCH", url + "/api/v1/links/link0", token=harness.token, body={"enabled": False}
        )
        assert status == 409 and "last" in body["error"]["message"]
    finally:
        request("PATCH", url + "/api/v1/links/link1", token=harness.token, body={"enabled": True})


def test_per_session_scheduler_and_up_since(harness: Harness) -> None:
    sessions = get(harness, harness.remote_url, "/api/v1/sessions")["sessions"]
    sid = sessions[0]["session_id"]
    assert sessions[0]["up_since"] <= time.time()
    status, body, _ = request(
        "PATCH",
        f"{harness.remote_url}/api/v1/sessions/{sid}",
        token=harness.token,
        body={"scheduler": "round-robin"},
    )
    assert status == 200 and body["parameters"]["scheduler"] == "round-robin"
    assert harness.on_loop(
        lambda: [s.inner.scheduler for s in harness.remote.sessions.values()]
    ) == ["round-robin"]
    # up_since is stable from one read to the next.
    again = get(harness, harness.remote_url, f"/api/v1/sessions/{sid}")
    assert again["up_since"] == sessions[0]["up_since"]


def test_thresholds_at_run_time(harness: Harness) -> None:
    url = harness.remote_url
    status, body, _ = request(
        "PATCH",
        url + "/api/v1/policies",
        token=harness.token,
        body={"parameters": {"dead_interval": 0.4, "bod_upper": 0.9, "delay_cutoff": 0.05}},
    )
    assert status == 200, body
    assert body["parameters"]["dead_interval"] == 0.4
    configs = harness.on_loop(
        lambda: (
            [s.inner.config for s in harness.remote.sessions.values()]
            + [harness.remote.session_config]
        )
    )
    assert all((c.dead_interval, c.bod_upper, c.delay_cutoff) == (0.4, 0.9, 0.05) for c in configs)
    # Refused combinations and values: 409 / 422, nothing applied.
    status, body, _ = request(
        "PATCH",
        url + "/api/v1/policies",
        token=harness.token,
        body={"parameters": {"keepalive_interval": 1.0}},
    )
    assert status == 409 and "dead_interval" in body["error"]["message"]
    for bad in ({"dead_interval": -1}, {"nope": 1}, {"redundant_copies": 1.5}):
        status, body, _ = request(
            "PATCH", url + "/api/v1/policies", token=harness.token, body={"parameters": bad}
        )
        assert status == 422, body
    assert harness.on_loop(lambda: harness.remote.session_config.keepalive_interval) == 0.05
    status, _, _ = request(
        "PATCH",
        url + "/api/v1/policies",
        token=harness.token,
        body={"parameters": {"dead_interval": 0.25}},
    )
    assert status == 200


def test_bearer_scheme_is_case_insensitive(harness: Harness) -> None:
    import urllib.request

    req = urllib.request.Request(harness.local_url + "/api/v1/portal")
    req.add_header("Authorization", f"bearer {harness.token}")
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200
