"""The results browser in a real browser: headless Chromium (Debian's package) with selenium.

One bundled ``anisoscreen run-screen`` fills a store in a temporary data folder; then
``anisoscreen serve`` runs as a subprocess on 127.0.0.1 on a free port. The tests load the
candidates page, filter by a_r and sort, open a material and check the 3D viewer's canvas
and the tensor, and open the ``report --html`` file with the network switched off.
Screenshots go to ``test-artifacts/web/`` (git-ignored). The module skips, with the reason,
only where no Chromium or chromedriver is installed (``.ci/install_chromium.sh`` installs
them).
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from cli_helpers import CLI

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts" / "web"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

if CHROMIUM is None or CHROMEDRIVER is None:
    pytest.skip(
        "Chromium/chromedriver not installed (apt-get install chromium chromium-driver, "
        "or run .ci/install_chromium.sh)",
        allow_module_level=True,
    )


def _cli(*args: str) -> list[str]:
    code = CLI
    return [sys.executable, "-c", code, *args]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def screened(tmp_path_factory) -> dict[str, str]:
    """Environment of a data folder filled by a bundled ``run-screen``."""
    data = tmp_path_factory.mktemp("browser-data")
    (data / "config.yaml").touch()  # an explicitly named config file must exist
    env = {
        **os.environ,
        "ANISOSCREEN_DATA_DIR": str(data / "data"),
        "ANISOSCREEN_CONFIG": str(data / "config.yaml"),
        "HOME": str(data / "home"),
        "PYTHONPATH": str(REPO),
    }
    env.pop("ANISOSCREEN_STORE", None)
    run = subprocess.run(_cli("run-screen"), env=env, capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stderr[-3000:]
    return env


@pytest.fixture(scope="module")
def server(screened):
    """``anisoscreen serve`` on 127.0.0.1:<free port>; yields its base URL."""
    port = _free_port()
    log = open(Path(screened["ANISOSCREEN_DATA_DIR"]).parent / "serve.log", "w+")  # noqa: SIM115
    process = subprocess.Popen(
        _cli("serve", "--port", str(port)), env=screened, stdout=log, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(base + "/api/summary", timeout=30) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            log.seek(0)
            pytest.fail(f"anisoscreen serve did not start: {log.read()[-2000:]}")
        time.sleep(0.5)
    yield base
    process.terminate()
    process.wait(timeout=30)
    log.close()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    options.page_load_strategy = "eager"  # figures may take a while: tests wait for what they need
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        "--use-angle=swiftshader",  # software WebGL for the 3D viewer
        "--enable-unsafe-swiftshader",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(120)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def _api(base: str, path: str) -> dict:
    import json

    with urllib.request.urlopen(base + path, timeout=60) as response:
        return json.load(response)


def _rows(driver) -> list[dict[str, str]]:
    from selenium.webdriver.common.by import By

    return [
        {
            "id": row.get_attribute("data-material-id"),
            "ar": row.get_attribute("data-ar"),
            "formula": row.get_attribute("data-formula"),
        }
        for row in driver.find_elements(By.CSS_SELECTOR, "#candidates tbody tr[data-material-id]")
    ]


def _wait(driver, condition, timeout: float = 60):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


def _wait_for_page(driver, url_part: str) -> None:
    """Wait until the browser shows a parsed page whose URL contains ``url_part``."""
    _wait(
        driver,
        lambda d: (
            url_part in d.current_url
            and d.execute_script("return document.readyState") != "loading"
        ),
    )


def test_candidates_page_filter_sort_and_material(server, browser):
    from selenium.webdriver.common.by import By

    everything = _api(server, "/api/candidates?limit=500")
    total = everything["meta"]["total"]
    assert total > 20  # the bundled screening predicts ~100 candidates

    browser.get(server + "/candidates")
    rows = _rows(browser)
    assert [r["id"] for r in rows] == [r["material_id"] for r in everything["data"][:50]]
    assert [r["formula"] for r in rows] == [r["formula"] for r in everything["data"][:50]]
    assert f"{total} candidates match" in browser.find_element(By.ID, "result-count").text
    browser.save_screenshot(str(ARTIFACTS / "candidates.png"))

    # filter by a_r through the form: the threshold keeps roughly the top quarter
    ratios = sorted((r["anisotropy_ratio"] for r in everything["data"]), reverse=True)
    threshold = round(ratios[len(ratios) // 4], 3)
    expected = _api(server, f"/api/candidates?ar_min={threshold}&limit=500")["data"]
    field = browser.find_element(By.ID, "ar_min")
    field.clear()
    field.send_keys(str(threshold))
    browser.find_element(By.ID, "apply").click()
    _wait_for_page(browser, "ar_min=")
    assert "ar_max=" not in browser.current_url  # empty fields stay out of the URL
    rows = _rows(browser)
    page_size = 50  # the table's first page
    assert [r["id"] for r in rows] == [r["material_id"] for r in expected[:page_size]]
    assert f"{len(expected)} candidates match" in browser.find_element(By.ID, "result-count").text
    assert 0 < len(expected) < total
    assert all(float(r["ar"]) >= threshold - 1e-9 for r in rows)
    browser.save_screenshot(str(ARTIFACTS / "candidates-filtered.png"))

    # sort by formula by clicking the column header (server-side, filter kept)
    browser.find_element(By.CSS_SELECTOR, 'th[data-sort="formula"] a').click()
    _wait_for_page(browser, "sort=formula")
    rows = _rows(browser)
    formulas = [r["formula"] for r in rows]
    assert formulas == sorted(formulas) and len(rows) == min(page_size, len(expected))
    assert f"ar_min={threshold}" in browser.current_url
    browser.save_screenshot(str(ARTIFACTS / "candidates-sorted.png"))

    # open the first material
    first = rows[0]["id"]
    browser.find_element(By.CSS_SELECTOR, f'a[href="/materials/{first}"]').click()
    _wait_for_page(browser, f"/materials/{first}")
    _wait(browser, lambda d: d.find_element(By.ID, "viewer").get_attribute("data-ready") == "true")
    canvas = browser.find_element(By.CSS_SELECTOR, "#viewer canvas")
    assert canvas.size["width"] > 200 and canvas.size["height"] > 200
    material = _api(server, f"/api/materials/{first}")
    tensor_text = browser.find_element(By.ID, "predicted-tensor").text
    for value in material["card"]["predicted"]["eigenvalues"]:
        assert f"{value:.3f}" in tensor_text
    assert f"{material['card']['predicted']['anisotropy_ratio']:.3f}" in tensor_text
    viewer = browser.find_element(By.ID, "viewer")
    deadline = time.monotonic() + 30  # wait until the viewer has drawn the structure
    while (coloured := _drawn_fraction(viewer.screenshot_as_png)) <= 0.01:
        if time.monotonic() > deadline:
            break
    browser.save_screenshot(str(ARTIFACTS / "material.png"))
    assert coloured > 0.01, f"the 3D viewer looks empty ({coloured:.4f} of pixels drawn)"


def _drawn_fraction(png: bytes) -> float:
    """Share of the pixels that are not background white (the viewer shows a structure)."""
    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=int)
    return float((np.abs(pixels - 255).sum(axis=2) > 60).mean())


def test_overview_page_draws_figures(server, browser):
    from selenium.webdriver.common.by import By

    browser.get(server + "/overview")
    _wait(
        browser,
        lambda d: d.execute_script(
            "return Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)"
        ),
        timeout=600,  # drawn on first request: seconds on an idle machine, minutes on a busy one
    )
    widths = browser.execute_script(
        "return Array.from(document.querySelectorAll('#figure-dimensionality img, "
        "#figure-periodic-count img')).map(i => i.naturalWidth)"
    )
    assert len(widths) == 2 and min(widths) > 300
    assert browser.find_elements(By.CSS_SELECTOR, "table.runs")
    browser.save_screenshot(str(ARTIFACTS / "overview.png"))


def test_html_report_renders_offline(screened, browser, tmp_path):
    from selenium.webdriver.common.by import By

    out = tmp_path / "report.html"
    run = subprocess.run(
        _cli("report", "--html", str(out), "--top", "25"),
        env=screened,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    text = out.read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd(
        "Network.emulateNetworkConditions",
        {"offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
    )
    try:
        browser.get(out.as_uri())
        rows = _rows(browser)
        assert len(rows) == 25
        ratios = [float(r["ar"]) for r in rows]
        assert ratios == sorted(ratios, reverse=True)
        cards = browser.find_elements(By.CSS_SELECTOR, ".card")
        assert len(cards) == 25
        images = browser.execute_script(
            "return Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)"
        )
        assert images and all(images)  # inline figures decode without any network
        resources = browser.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)"
        )
        assert [r for r in resources if not r.startswith("data:")] == []
        # the inline script sorts the table by formula on a header click
        browser.find_element(By.CSS_SELECTOR, 'th[data-sort="formula"]').click()
        formulas = [r["formula"] for r in _rows(browser)]
        assert formulas == sorted(formulas, reverse=True)
        browser.save_screenshot(str(ARTIFACTS / "report.png"))
    finally:
        browser.execute_cdp_cmd(
            "Network.emulateNetworkConditions",
            {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
        )


def test_api_docs_render_offline_with_their_operations(server, browser):
    """Swagger UI and ReDoc come from the server itself: no CDN, no inline script."""
    from selenium.webdriver.common.by import By

    browser.get(server + "/docs")
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".opblock"), timeout=120)
    operations = [
        e.get_attribute("id") or "" for e in browser.find_elements(By.CSS_SELECTOR, ".opblock")
    ]
    assert len(operations) >= 8 and any("campaigns" in o for o in operations), operations
    resources = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert all(r.startswith(server) for r in resources), resources
    browser.save_screenshot(str(ARTIFACTS / "docs.png"))
    browser.get(server + "/redoc")
    _wait(browser, lambda d: "/api/candidates" in d.page_source, timeout=120)
    assert _api(server, "/api")["endpoints"]


def test_demo_report_has_a_parity_panel(screened, tmp_path):
    """After the bundled screen, the report draws parity from the imported MP DFPT results."""
    out = tmp_path / "report.html"
    run = subprocess.run(
        _cli("report", "--html", str(out)), env=screened, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-3000:]
    text = out.read_text(encoding="utf-8")
    assert "not drawn" not in text
