"""The dashboard page in headless Chromium (Debian's chromium + chromedriver, driven by selenium).

The local stack gets a small fleet's messages through a real Mosquitto (golden batches, recent
+A captures, alarms, a tamper event, anomalies, health snapshots); the page is opened with
``?key=``, and the test waits until every panel has rendered, then checks the DOM and saves a
screenshot (``AMI_DASHBOARD_SCREENSHOT=path`` also copies it there, e.g. docs/img/dashboard.png).

Skips (with the reason) when chromium, chromedriver or selenium are missing: scripts/setup.sh
installs the Debian packages ``chromium`` and ``chromium-driver``; selenium is a test extra.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from cloud.local import run_local_stack
from edge_core.bus.mqtt import MqttBus
from edge_core.bus.settings import MqttSettings

from .dashboard_data import RECENT_METERS, THING, fleet_messages

KEY = "k-dash"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


def _driver(profile: Path) -> Any:
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip(
            "headless Chromium is not installed (apt-get install chromium chromium-driver; "
            "scripts/setup.sh does it)"
        )
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install 'ami-edge[test]')")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--window-size=1400,1900",
    ):
        opts.add_argument(flag)
    # An explicit driver path: selenium never looks for (or downloads) one itself.
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)


@pytest.mark.broker
@pytest.mark.slow
def test_dashboard_renders_the_fleet(broker: Any, tmp_path: Path) -> None:
    driver = _driver(tmp_path / "chromium-profile")

    async def main() -> None:
        stack = await run_local_stack(
            broker.host, broker.port, tmp_path / "cloud", 0, KEY, compact_every_s=0
        )
        pub = MqttBus(MqttSettings.from_url(broker.url, client_id_prefix="dash-pub"))
        try:
            await pub.start()
            messages = fleet_messages(int(time.time()))
            for topic, payload in messages:
                await pub.publish(topic, payload, 1)
            # every message delivered (a busy machine may pause between deliveries), then idle
            deadline = time.monotonic() + 30
            while stack.received < len(messages) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert stack.received == len(messages)
            assert await stack.wait_idle(quiet_s=0.2)
            # the browser blocks: drive it from a thread while the stack's loop runs
            await asyncio.to_thread(_check_page, driver, stack.api_url, tmp_path)
        finally:
            await pub.close()
            await stack.close()

    try:
        asyncio.run(main())
    finally:
        driver.quit()


def _check_page(driver: Any, api_url: str, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{api_url}/?key={KEY}")
    WebDriverWait(driver, 30).until(
        lambda d: d.execute_script("return document.body.dataset.ready") in ("1", "error")
    )
    status = driver.find_element(By.ID, "status").text
    assert driver.execute_script("return document.body.dataset.ready") == "1", status
    # the key moved from the URL to localStorage
    assert "key=" not in driver.current_url
    assert driver.execute_script("return localStorage.getItem('ami-edge.api-key')") == KEY

    fleet = {
        tr.get_attribute("data-meter"): tr.text
        for tr in driver.find_elements(By.CSS_SELECTOR, "#fleet tbody tr")
    }
    assert set(RECENT_METERS) | {"MTR00000", "KFM1000000000000", "zähler-ü"} <= set(fleet)
    assert THING in fleet["MTR-A"]
    assert "outage since" in fleet["MTR-A"]
    assert "on" in fleet["MTR-B"].split()  # restored

    def curve_points(d: Any) -> int:
        # read in one script: the chart may be replaced between two WebDriver calls
        n = d.execute_script(
            "const c = document.querySelector('#load-curve svg polyline.curve');"
            "return c ? c.getAttribute('data-points') : null"
        )
        return -1 if n is None else int(n)

    # select MTR-A: its curve has two days of 15-minute intervals, one point each
    driver.find_element(By.CSS_SELECTOR, '#fleet tbody tr[data-meter="MTR-A"]').click()
    WebDriverWait(driver, 10).until(lambda d: curve_points(d) == 2 * 96)
    assert "selected" in driver.find_element(
        By.CSS_SELECTOR, '#fleet tbody tr[data-meter="MTR-A"]'
    ).get_attribute("class")

    alarms = [tr.text for tr in driver.find_elements(By.CSS_SELECTOR, "#alarms tbody tr")]
    assert any("tamper" in a and "MTR-A" in a for a in alarms)
    assert any("outage" in a and "MTR-B" in a for a in alarms)
    assert driver.find_elements(By.CSS_SELECTOR, "#timeline svg rect.outage")

    anomalies = [tr.text for tr in driver.find_elements(By.CSS_SELECTOR, "#anomalies tbody tr")]
    assert any("MTR-A" in a and "0.910" in a for a in anomalies)
    assert any("reverse_flow" in a for a in anomalies)

    dcu = driver.find_element(By.CSS_SELECTOR, f'#health .dcu[data-thing="{THING}"]')
    assert "0 readings" in dcu.find_element(By.CSS_SELECTOR, ".backlog").text
    assert "p99 85 ms" in dcu.text
    assert dcu.find_elements(By.CSS_SELECTOR, "svg.spark polyline")

    shot = tmp_path / "dashboard.png"
    assert driver.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    target = os.environ.get("AMI_DASHBOARD_SCREENSHOT")
    if target:
        shutil.copyfile(shot, target)
