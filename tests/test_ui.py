"""The web page (/ui) and /docs in a real headless browser (Debian's chromium and chromedriver,
through Selenium), with every host but 127.0.0.1 unreachable: the page generates digits for a
label and rows for a table model, shows a row's bands, and nothing is fetched from elsewhere.
Screenshots of each view go to .pytest_cache/screenshots/."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
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
    assert header == [
        "species",
        "island",
        "bill_length_mm",
        "bill_depth_mm",
        "flipper_length_mm",
        "body_mass_g",
        "sex",
        "year",
    ]
    assert len(table.find_elements("css selector", "tbody tr")) == 16
    histograms = browser.find_elements("css selector", ".histogram svg")
    assert len(histograms) == 7
    # penguins-cvae@1 was made before per-label references: its line is its quantile encoding's, which
    # describes the training rows of every label, and it says so
    assert "line: training data, all labels" in browser.find_element("css selector", ".histograms").text
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


# ---- histograms against the training rows, and the bands view ---------------------------------

SLOT = re.compile(r"^(?P<label>.*): generated (?P<made>[\d.]+)%(?:, training data (?P<real>[\d.]+)%)?$")


def write_page_table_csv(path: Path, rows: int = 600, seed: int = 5) -> Path:
    """Two labels far apart on `score` (a: 0 to 10, b: 90 to 100); `size` log-normal over many decades
    with zeros and gaps; `change` heavy-tailed on both sides of zero; `colour` categorical with gaps."""
    rng = np.random.default_rng(seed)
    group = np.where(np.arange(rows) % 2 == 0, "a", "b")
    score = np.where(group == "a", rng.uniform(0, 10, rows), rng.uniform(90, 100, rows))
    size = np.where(rng.random(rows) < 0.15, 0.0, rng.lognormal(2.0, 2.5, rows))
    size_cells = np.where(rng.random(rows) < 0.1, "", [f"{v:.6g}" for v in size])
    change = 5 * rng.standard_t(1, rows)
    colour = np.where(rng.random(rows) < 0.2, "", rng.choice(["red", "green", "blue"], rows))
    lines = ["group,score,size,change,colour"]
    lines += [
        f"{g},{s:.4f},{z},{c:.4f},{k}" for g, s, z, c, k in zip(group, score, size_cells, change, colour, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def table_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server of one conditional table model trained briefly on `write_page_table_csv`'s rows."""
    from training.pipeline import TrainOptions, train_and_export
    from training.train import TrainConfig

    root = tmp_path_factory.mktemp("page-table")
    opts = TrainOptions(
        data=str(write_page_table_csv(root / "page.csv")),
        name="page-table",
        label_column="group",
        conditional=True,
        latent_dim=2,
        hidden=(16,),
        models_dir=root / "models",
        formats=("onnx",),
        quality_report=False,
        train=TrainConfig(max_epochs=3, warmup_epochs=1, seed=0),
    )
    train_and_export(opts, log=lambda _: None)
    live = LiveServer({"GENSERVE_MODEL_DIR": str(root / "models")})
    yield live
    live.stop()


def generate_rows(driver, server: LiveServer, label: str, n: int = 40) -> None:
    from selenium.webdriver.support.ui import Select

    driver.get(server.url + "/ui")
    choose_model(driver, "page-table")
    Select(driver.find_element("id", "label")).select_by_visible_text(label)
    count = driver.find_element("id", "n")
    count.clear()
    count.send_keys(str(n))
    driver.find_element("css selector", "#generate-form button[type=submit]").click()
    wait_for(driver, ".histogram")


def slots(driver, column: str) -> list[dict]:
    """Each bar of a column's histogram: its kind (bin, zero, category, missing) and what its tooltip
    says (label, generated share, training share in %)."""
    found = driver.execute_script(
        "return [...document.querySelectorAll(`.histogram[data-column='${arguments[0]}'] g.slot`)]"
        ".map((g) => [g.getAttribute('class'), g.querySelector('title').textContent])",
        column,
    )
    out = []
    for kind, title in found:
        match = SLOT.match(title)
        assert match, title
        real = match["real"]
        out.append(
            {"kind": kind.split()[1], **match.groupdict(), "made": float(match["made"]), "real": real and float(real)}
        )
    return out


def histogram_of(driver, column: str):
    return driver.find_element("css selector", f".histogram[data-column='{column}']")


def test_a_column_over_many_decades_gets_log_bins_and_zero_a_bar_of_its_own(browser, table_server) -> None:
    generate_rows(browser, table_server, "a")
    size = histogram_of(browser, "size")
    assert size.get_attribute("data-scale") == "log"
    assert "log scale" in size.text
    bars = slots(browser, "size")
    assert [s["kind"] for s in bars][:2] == ["zero", "bin"] and bars[0]["label"] == "0"
    assert bars[0]["real"] > 5  # about 15% of the training rows are 0
    # the training rows spread over the log bins, where a linear axis put nearly all of them in its first bin
    assert sum(s["kind"] == "bin" and s["real"] >= 3 for s in bars) >= 5
    # values on both sides of zero: symlog; a column without a long tail keeps its linear axis
    assert histogram_of(browser, "change").get_attribute("data-scale") == "symlog"
    assert "symlog scale" in histogram_of(browser, "change").text
    assert histogram_of(browser, "score").get_attribute("data-scale") == "linear"
    browser.execute_script("arguments[0].scrollIntoView()", size)
    browser.save_screenshot(str(SHOTS / "ui-log-bins.png"))


def test_the_training_line_is_the_chosen_labels_rows(browser, table_server) -> None:
    for label, low in (("a", 100), ("b", 0)):
        generate_rows(browser, table_server, label)
        assert f"line: training data, label {label}" in histogram_of(browser, "score").text
        bins = [s for s in slots(browser, "score") if s["kind"] == "bin"]
        upper_edges = [float(s["label"].split(" to ")[1]) for s in bins]
        below_50 = sum(s["real"] for s, upper in zip(bins, upper_edges, strict=True) if upper <= 50)
        assert below_50 == pytest.approx(low, abs=1), bins  # a's rows all lie below 10, b's above 90
        assert sum(s["real"] for s in bins) == pytest.approx(100, abs=1)  # each share rounded to 0.1%


def test_histograms_show_missing_values_as_a_bar_of_their_own(browser, table_server) -> None:
    import httpx

    n = 40
    generate_rows(browser, table_server, "b", n)
    reference = httpx.get(f"{table_server.url}/models/page-table").json()["reference"][1]["columns"]
    header = [th.text for th in browser.find_elements("css selector", "#sample-table thead th")]
    cells = browser.execute_script(
        "return [...document.querySelectorAll('#sample-table tbody tr')]"
        ".map((row) => [...row.cells].map((c) => c.textContent))"
    )
    for column in ("colour", "size"):
        bars = slots(browser, column)
        missing = [s for s in bars if s["kind"] == "missing"]
        assert len(missing) == 1 and bars[-1] is missing[0] and missing[0]["label"] == "missing"
        gaps = sum(row[header.index(column)] == "" for row in cells)
        assert missing[0]["made"] == pytest.approx(100 * gaps / n, abs=0.05)
        assert missing[0]["real"] == pytest.approx(100 * reference[column]["missing"], abs=0.05)
        assert "dashed: missing" in histogram_of(browser, column).text
    colours = [s for s in slots(browser, "colour") if s["kind"] == "category"]
    assert [s["label"] for s in colours] == ["blue", "green", "red"]
    # the shares are of all rows: the categories and the missing bar add up to all of them
    assert sum(s["real"] for s in slots(browser, "colour")) == pytest.approx(100, abs=1)
    # a column without gaps has no missing bar
    assert all(s["kind"] != "missing" for s in slots(browser, "score"))
    browser.execute_script("arguments[0].scrollIntoView()", histogram_of(browser, "colour"))
    browser.save_screenshot(str(SHOTS / "ui-missing.png"))


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


def test_the_page_generates_rows_under_conditions(browser, table_server) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(table_server.url + "/ui")
    choose_model(browser, "page-table")
    assert not browser.find_element("id", "rules-panel").is_displayed()  # none found in this table
    field = browser.find_element("id", "conditions")
    field.send_keys('{"colour": "red"}')
    browser.find_element("css selector", "#generate-form button[type=submit]").click()
    wait_for(browser, "#sample-table")
    header = [th.text for th in browser.find_elements("css selector", "#sample-table thead th")]
    colours = browser.execute_script(
        "return [...document.querySelectorAll('#sample-table tbody tr')]"
        ".map((row) => row.cells[arguments[0]].textContent)",
        header.index("colour"),
    )
    assert len(colours) == 16 and set(colours) == {"red"}
    field.clear()
    field.send_keys('{"colour": "pink"}')
    browser.find_element("css selector", "#generate-form button[type=submit]").click()
    message = browser.find_element("id", "message")
    WebDriverWait(browser, 20).until(lambda _: "unknown category 'pink'" in message.text)
    field.clear()
    field.send_keys("{colour: red")
    browser.find_element("css selector", "#generate-form button[type=submit]").click()
    WebDriverWait(browser, 20).until(lambda _: "conditions: not JSON" in message.text)
