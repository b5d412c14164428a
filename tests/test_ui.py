"""The web page (/ui) and /docs in a real headless browser (Debian's chromium and chromedriver,
through Selenium), with every host but 127.0.0.1 unreachable: the page generates digits for a
label and rows for a table model, shows a row's bands, and nothing is fetched from elsewhere.
Screenshots of each view go to .pytest_cache/screenshots/."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import ROOT, LiveServer, real_rows

SHOTS = ROOT / ".pytest_cache" / "screenshots"
CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def _browser_installed() -> str | None:
    """None when chromium and its driver are here (installed from Debian's packages if need be),
    else why not."""
    if Path(CHROMIUM).exists() and Path(DRIVER).exists():
        return None
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "chromium and chromium-driver are not installed, and apt-get cannot install them here (not root)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver"]):
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        if result.returncode != 0:
            return f"{' '.join(command)} failed: {result.stderr[-500:]}"
    return None if Path(CHROMIUM).exists() and Path(DRIVER).exists() else "apt-get installed no chromium"


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    live = LiveServer({})
    yield live
    live.stop()


@pytest.fixture(scope="module")
def browser(server):
    why = _browser_installed()
    if why:
        pytest.skip(f"no browser for the page test: {why}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1300,1500",
        # the network cut: every host name but 127.0.0.1 fails to resolve
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=DRIVER))
    driver.set_page_load_timeout(30)
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def requested_hosts(driver) -> set[str]:
    """Every host the browser sent a request to (from its DevTools log)."""
    hosts = set()
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            url = message["params"]["request"]["url"]
            if not url.startswith(("data:", "blob:")):
                hosts.add(urlsplit(url).hostname)
    return hosts


def wait_for(driver, css: str, timeout: float = 20):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(
        expected_conditions.visibility_of_element_located((By.CSS_SELECTOR, css))
    )


def choose_model(driver, name: str) -> None:
    wait_for(driver, f'#models tr[data-model="{name}"]').click()
    wait_for(driver, "#model-title")
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 10).until(lambda d: d.find_element("id", "model-title").text.startswith(name))


def test_docs_render_offline(browser, server) -> None:
    browser.get(server.url + "/docs")
    wait_for(browser, ".opblock", timeout=30)
    operations = browser.find_elements("css selector", ".opblock")
    assert len(operations) >= 10, len(operations)
    browser.save_screenshot(str(SHOTS / "docs.png"))
    assert requested_hosts(browser) == {"127.0.0.1"}


def test_the_page_generates_digits_for_a_label(browser, server) -> None:
    from selenium.webdriver.support.ui import Select

    browser.get(server.url + "/ui")
    choose_model(browser, "digits-cvae")
    Select(browser.find_element("id", "label")).select_by_visible_text("7")
    n = browser.find_element("id", "n")
    n.clear()
    n.send_keys("16")
    browser.find_element("css selector", "#generate-form button[type=submit]").click()
    image = wait_for(browser, "#sample-grid")
    browser.execute_script("arguments[0].scrollIntoView()", image)
    size = browser.execute_script("return [arguments[0].naturalWidth, arguments[0].naturalHeight]", image)
    assert size == [4 * 50 + 2, 4 * 50 + 2]  # 4 x 4 digits of 8 x 8 pixels, each 6x, 2 px apart
    figures = browser.find_elements("css selector", "#figures img")
    assert figures, "the training figures are missing"
    browser.save_screenshot(str(SHOTS / "ui-digits.png"))
    assert requested_hosts(browser) == {"127.0.0.1"}


def test_the_page_shows_a_table_models_rows_and_histograms(browser, server) -> None:
    browser.get(server.url + "/ui")
    choose_model(browser, "penguins-cvae")
    browser.find_element("css selector", "#generate-form button[type=submit]").click()
    table = wait_for(browser, "#sample-table")
    header = [th.text for th in table.find_elements("css selector", "thead th")]
    assert header == ["island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "sex", "year"]
    assert len(table.find_elements("css selector", "tbody tr")) == 16
    histograms = browser.find_elements("css selector", ".histogram svg")
    assert len(histograms) == 7
    assert "training data" in browser.find_element("css selector", ".histograms").text
    browser.execute_script("arguments[0].scrollIntoView()", table)
    browser.save_screenshot(str(SHOTS / "ui-table.png"))


def test_the_page_plots_a_rows_bands(browser, server) -> None:
    from selenium.webdriver.support.ui import Select

    browser.get(server.url + "/ui")
    choose_model(browser, "cancer-qvae")
    rows, labels = real_rows("cancer-qvae", 1)
    browser.find_element("id", "row").send_keys(json.dumps(rows[0]))
    Select(browser.find_element("id", "band-label")).select_by_visible_text(labels[0])
    browser.find_element("css selector", "#bands-form button[type=submit]").click()
    plot = wait_for(browser, "#bands svg")
    assert len(plot.find_elements("css selector", "circle")) == 30  # the row's value, per feature
    assert (
        "outside the outer band" in browser.find_element("id", "outside").text
        or "inside" in browser.find_element("id", "outside").text
    )
    browser.execute_script("arguments[0].scrollIntoView()", plot)
    browser.save_screenshot(str(SHOTS / "ui-bands.png"))
    assert requested_hosts(browser) == {"127.0.0.1"}


def test_a_model_without_bands_is_not_offered_them(browser, server) -> None:
    import httpx

    heads = {m["name"]: (m["head"], m["bands"]) for m in httpx.get(server.url + "/models").json()["models"]}
    assert heads["digits-cvae"] == ("bernoulli", False) and heads["cancer-qvae"] == ("quantile", True)
    browser.get(server.url + "/ui")
    choose_model(browser, "digits-cvae")
    assert not browser.find_element("id", "bands-panel").is_displayed()
    note = browser.find_element("id", "no-bands")
    assert note.is_displayed() and "bernoulli head" in note.text and "no spread" in note.text
    choose_model(browser, "cancer-qvae")
    assert browser.find_element("id", "bands-form").is_displayed()
    assert not browser.find_element("id", "no-bands").is_displayed()
