"""The dashboard in a real headless Chromium: loads, charts update under traffic, forms apply.

Needs Debian's chromium and chromium-driver (skipped with the reason when missing).
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator

import pytest
from apiharness import CONFIG, Harness, ipv4_tcp_syn, request

CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMEDRIVER) or not os.path.exists(CHROMIUM),
    reason="needs chromium and chromium-driver (apt-get install -y chromium chromium-driver)",
)


@pytest.fixture(scope="module")
def harness() -> Iterator[Harness]:
    # The local portal equalizes TCP, clamps the MSS of TCP SYNs and has NACK recovery
    # always on (the sessions table shows all three); the remote does none of it.
    h = Harness(local_config=dataclasses.replace(CONFIG, equalize="tcp", clamp_mss=1360, nack="on"))
    try:
        h.start_traffic(interval=0.01, burst=8)
        h.wait_session()
        yield h
    finally:
        h.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="braid-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--window-size=1280,1600",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.set_page_load_timeout(20)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_js(driver, script: str, timeout: float = 15.0):  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while True:
        value = driver.execute_script(script)
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for: {script}")
        time.sleep(0.2)


def test_page_loads_and_charts_update_under_traffic(harness: Harness, browser) -> None:  # type: ignore[no-untyped-def]
    driver = browser
    driver.get(f"{harness.local_url}/#token={harness.token}")
    assert "braid" in driver.title
    wait_js(driver, "return window.braid && window.braid.sessions.length === 1")
    assert driver.find_element("id", "role").text == "local portal"
    # Charts: at least three one-second samples, each with positive throughput.
    wait_js(driver, "return window.braid.samples >= 3", timeout=20)
    series = driver.execute_script("return window.braid.series.throughput")
    assert set(series) == {"0 link0", "1 link1"}
    recent = [v for points in series.values() for _, v in points[-2:]]
    assert max(recent) > 0.1, recent  # Mbit/s
    points = int(driver.find_element("id", "chart-throughput").get_attribute("data-points"))
    assert points >= 4
    samples = driver.execute_script("return window.braid.samples")
    wait_js(driver, f"return window.braid.samples > {samples}", timeout=5)  # every second
    # The session table shows the session with its paths.
    rows = driver.find_elements("css selector", "#sessions tbody tr")
    sid = harness.on_loop(lambda: f"{harness.local.session.session_id:08x}")
    assert rows[0].get_attribute("data-session") == sid
    # The equalize column: the mode, the current hold and the packets held so far.
    headers = [th.text for th in driver.find_elements("css selector", "#sessions thead th")]
    cells = [td.text for td in rows[0].find_elements("css selector", "td")]
    assert len(cells) == len(headers), (headers, cells)
    equalize = cells[headers.index("equalize")]
    assert re.fullmatch(r"tcp \+\d+ ms, \d+ held", equalize), equalize
    # Header compression: the share of the packets sent compressed and the bytes saved.
    headers_cell = cells[headers.index("headers")]
    assert re.fullmatch(r"on, \d+ % compact, [\d.]+ [kMG]?B saved", headers_cell), headers_cell
    # TCP MSS clamping: the MSS SYNs get and how many were lowered (a SYN asking for 1460
    # enters the tunnel and is counted).
    mss_column = headers.index("TCP MSS")
    assert cells[mss_column] == "1360, 0 SYNs clamped", cells[mss_column]
    harness.on_loop(
        lambda: harness.local_tun.inject(ipv4_tcp_syn("10.1.0.2", "10.2.0.2", 40000, 80, 1460))
    )
    wait_js(
        driver,
        "return document.querySelector('#sessions tbody tr')"
        f".querySelectorAll('td')[{mss_column}].textContent === '1360, 1 SYN clamped'",
    )
    # ACK filtering, on by default (the harness's traffic is UDP: none replaced).
    assert cells[headers.index("ACKs")] == "on, 0 replaced", cells[headers.index("ACKs")]
    # Loss recovery: the setting, the losses this egress had resent, the packets resent.
    recovery = cells[headers.index("loss recovery")]
    assert re.fullmatch(r"on, \d+ recovered, \d+ resent", recovery), recovery
    assert len(driver.find_elements("css selector", "#paths tbody tr")) == 2
    assert driver.execute_script("return window.braid.lastError") is None


def test_metric_form_is_reflected_by_the_api(harness: Harness, browser) -> None:  # type: ignore[no-untyped-def]
    driver = browser
    driver.get(f"{harness.local_url}/#token={harness.token}")
    wait_js(
        driver,
        "return window.braid && document.querySelectorAll('#path-select option').length === 2",
    )
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element("id", "path-select")).select_by_value("1")
    field = driver.find_element("id", "path-metric")
    field.clear()
    field.send_keys("42")
    driver.find_element("id", "path-apply").click()
    wait_js(
        driver, "return document.getElementById('form-message').textContent.includes('updated')"
    )
    status, link, _ = request("GET", harness.local_url + "/api/v1/links/link1", token=harness.token)
    assert status == 200 and link["metric"] == 42
    metric = harness.on_loop(lambda: harness.local.session.inner.statistics().paths[1].metric)
    assert metric == 42
    # The thresholds form reaches every session of the portal.
    Select(driver.find_element("id", "param-name")).select_by_value("bod_upper")
    value = driver.find_element("id", "param-value")
    value.clear()
    value.send_keys("0.75")
    driver.find_element("id", "param-apply").click()
    wait_js(driver, "return document.getElementById('form-message').textContent.includes('0.75')")
    assert harness.on_loop(lambda: harness.local.session.inner.config.bod_upper) == 0.75
    # The scheduler form changes one traffic class's scheduler.
    Select(driver.find_element("id", "scheduler-class")).select_by_value("voice")
    Select(driver.find_element("id", "scheduler-select")).select_by_value("redundant")
    driver.find_element("id", "scheduler-apply").click()
    wait_js(driver, "return document.getElementById('form-message').textContent.includes('voice')")
    classes = harness.on_loop(lambda: harness.local.session.inner.config.classes)
    assert [(c.name, c.scheduler) for c in classes] == [("voice", "redundant")]
    assert harness.on_loop(lambda: harness.local.session.inner.scheduler) == "round-robin"
    # The remote portal's dashboard shows the session table with the peer's paths.
    driver.get(f"{harness.remote_url}/#token={harness.token}")
    wait_js(driver, "return window.braid && window.braid.sessions.length === 1")
    assert driver.find_element("id", "role").text == "remote portal"
    assert driver.find_element("id", "link-form").get_attribute("hidden") is not None


def test_wrong_token_is_reported(harness: Harness, browser) -> None:  # type: ignore[no-untyped-def]
    driver = browser
    driver.get(f"{harness.local_url}/#token=wrong")
    wait_js(driver, "return window.braid && window.braid.lastError")
    assert "wrong token" in driver.find_element("id", "status").text
