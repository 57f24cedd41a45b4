"""The app in a real browser: `streamlit run` on 127.0.0.1, headless Chromium via selenium.

Runs an advice on the digits CNN through the Advise page, waits for the ranked-plans table,
checks that no error or exception reached the page, and saves a screenshot under the test's
temporary folder. The flow is docs/make_screenshot.py's, which makes README's picture.
Needs Debian's `chromium` and `chromium-driver` (.ci/run installs them).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

SCRIPT = Path(__file__).resolve().parent.parent / "docs" / "make_screenshot.py"


def _load_flow():
    spec = importlib.util.spec_from_file_location("make_screenshot", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


flow = _load_flow()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if importlib.util.find_spec("selenium") is None:
        pytest.skip("selenium is not installed (pip install -e '.[dev]')")
    if flow.chromium_paths() is None:
        pytest.skip("needs chromium and chromedriver: apt-get install -y chromium chromium-driver")
    tmp = tmp_path_factory.mktemp("server")
    port = flow.free_port()
    env = {"EDGEDL_CACHE_DIR": str(tmp / "cache")}
    proc = flow.start_server(port, env=env, log=tmp / "streamlit.log")
    yield f"http://127.0.0.1:{port}"
    flow.stop_server(proc)
    assert proc.poll() is not None, "the streamlit server is still running"


def test_entry_link_opens_the_entry(server, tmp_path):
    """The links that plans' citations use (./?entry=ID) open that entry on Explore."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver = flow.make_driver(tmp_path / "chromium", height=1200)
    try:
        driver.get(f"{server}/?entry=branchynet")
        WebDriverWait(driver, 120).until(
            ec.presence_of_element_located(
                (By.XPATH, "//h3[starts-with(normalize-space(), 'BranchyNet')]")
            )
        )
        assert "Page not found" not in driver.find_element(By.TAG_NAME, "body").text
    finally:
        driver.quit()


def test_advice_through_the_advise_page(server, tmp_path):
    from selenium.webdriver.common.by import By

    driver = flow.make_driver(tmp_path / "chromium")
    try:
        flow.run_advice_page(driver, server, model="digits_cnn")
        summary = driver.find_elements(
            By.CSS_SELECTOR,
            "[data-testid='stAlertContentSuccess'],[data-testid='stAlertContentWarning']",
        )
        assert any("Recommended:" in s.text or "No plan meets" in s.text for s in summary)
        charts = driver.find_elements(By.CSS_SELECTOR, "[data-testid='stVegaLiteChart']")
        assert len(charts) >= 3
        png = tmp_path / "advise.png"
        assert driver.save_screenshot(str(png))
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    finally:
        driver.quit()
