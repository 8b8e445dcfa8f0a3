"""The admin page in a real browser (zkraft only): Debian's chromium, headless, driven by
selenium through Debian's chromedriver (both installed by ./dev; nothing is downloaded). It
loads a member's page against the live 3-member ensemble and sees the members with the
right leader, the znodes this test creates, and a request-rate chart that moves.

With ZK_ADMIN_SCREENSHOT=PATH, the page is saved there as a PNG once it shows them (the
screenshot in docs/ is made so).
"""

import json
import os
import shutil
import tempfile
import threading
import time
import urllib.request
import uuid

import pytest
from kazoo.client import KazooClient

from conftest import HOSTS, wait_until

ADMIN = os.environ.get("ZK_ADMIN")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

pytestmark = [
    pytest.mark.skipif(not ADMIN, reason="zkraft's members serve the admin page"),
    pytest.mark.skipif(
        not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
        reason="Debian's chromium and chromium-driver (./dev installs them)",
    ),
]


def command(addr, name):
    with urllib.request.urlopen(f"http://{addr}/commands/{name}", timeout=10) as r:
        return json.load(r)


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="zkraft-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # As this machine's probe runs it: headless, no sandbox (root), no network of its own.
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,1500",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_the_page_shows_the_ensemble_the_znodes_and_a_moving_chart(browser):
    from selenium.webdriver.common.by import By

    admins = ADMIN.split(",")
    hosts = HOSTS.split(",")
    leader = command(admins[0], "ensemble")["leader"]
    assert leader in (1, 2, 3)
    # The page of member 1, whose client port the load below goes to.
    browser.get(f"http://{admins[0]}/")

    def rows():
        return browser.find_elements(By.CSS_SELECTOR, "#members tbody tr")

    wait_until(lambda: len(rows()) == 3, timeout=20, what="three members on the page")
    wait_until(
        lambda: [r.get_attribute("data-id") for r in rows() if r.get_attribute("data-role") == "leader"]
        == [str(leader)],
        timeout=20,
        what=f"member {leader} shown as the leader",
    )
    # The leader's view of every member's progress shows, though member 1 may follow.
    wait_until(
        lambda: all(r.find_elements(By.TAG_NAME, "td")[5].text == "0" for r in rows()),
        timeout=20,
        what="every member's lag (0 when idle)",
    )
    # Every member's digest agrees once the writes are applied everywhere (idle).
    wait_until(
        lambda: all(r.find_elements(By.TAG_NAME, "td")[-1].text == "yes" for r in rows()),
        timeout=20,
        what="the digests to agree",
    )

    # Znodes this test creates, under a parent of its own, and a load that moves the chart.
    parent = f"/page-{uuid.uuid4().hex[:8]}"
    client = KazooClient(hosts=hosts[0], timeout=10.0)
    client.start(timeout=15)
    stop = threading.Event()

    def load():
        i = 0
        while not stop.is_set() and i < 20000:
            client.get(parent)
            i += 1

    try:
        client.create(parent, b"made by the page test")
        for name in ("alpha", "beta", "gamma"):
            client.create(f"{parent}/{name}", name.encode())
        client.get(f"{parent}/alpha", watch=lambda e: None)
        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        canvas = browser.find_element(By.ID, "rate")
        wait_until(
            lambda: float(canvas.get_attribute("data-last") or 0) > 0
            and int(canvas.get_attribute("data-samples") or 0) >= 2,
            timeout=20,
            what="the request-rate chart to move",
        )
        first = float(canvas.get_attribute("data-max"))
        assert first > 0

        # Browse: root, then the parent, then one of its children. The page redraws every
        # second, so a link is found and clicked in one step, in the page.
        def click(selector):
            wait_until(
                lambda: browser.execute_script(
                    "const a = document.querySelector(arguments[0]);"
                    "if (a) { a.click(); return true; } return false;",
                    selector,
                ),
                timeout=20,
                what=f"a link {selector}",
            )

        def open_link(path):
            click(f'#children a[data-path="{path}"]')

        open_link(parent)
        wait_until(
            lambda: sorted(a.text for a in browser.find_elements(By.CSS_SELECTOR, "#children a"))
            == ["alpha", "beta", "gamma"],
            timeout=20,
            what="the created znodes listed",
        )
        open_link(f"{parent}/beta")
        wait_until(lambda: browser.find_element(By.ID, "data").text == "beta", what="beta's data")
        stat = browser.find_element(By.ID, "stat").text
        assert "version" in stat and "num_children" in stat
        assert "world" in browser.find_element(By.ID, "acl").text
        # The watch set above shows per path, and the session in the sessions table.
        wait_until(
            lambda: f"{parent}/alpha" in browser.find_element(By.ID, "watches").text,
            what="the watch listed by path",
        )
        assert int(browser.find_element(By.ID, "session-count").text) >= 1
        shot = os.environ.get("ZK_ADMIN_SCREENSHOT")
        if shot:
            click(f'#crumbs a[data-path="{parent}"]')
            time.sleep(1.5)
            browser.save_screenshot(shot)
    finally:
        stop.set()
        client.delete(parent, recursive=True)
        client.stop()
        client.close()
