"""The app in a real browser: `streamlit run` on 127.0.0.1, headless Chromium via selenium.

Runs an advice on the digits CNN through the Advise page and changes a widget while it runs
(the run must survive, finish and appear in Runs), checks the summary card (accuracy drop,
margin to the target), that invalid latency and link values block Run with their reason, that
/explore loads at its URL, and saves a screenshot under the test's temporary folder. The flow
is docs/make_screenshot.py's, which makes README's picture.
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


def _body(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.TAG_NAME, "body").text


def test_explore_loads_at_its_url(server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver = flow.make_driver(tmp_path / "chromium")
    try:
        driver.get(f"{server}/explore")
        WebDriverWait(driver, 120).until(
            ec.presence_of_element_located(
                (By.XPATH, "//h1[starts-with(normalize-space(), 'Explore')]")
            )
        )
        assert "Page not found" not in _body(driver)
        assert driver.current_url.rstrip("/").endswith("/explore")
    finally:
        driver.quit()


def test_invalid_latency_and_link_block_run(server, tmp_path):
    driver = flow.make_driver(tmp_path / "chromium")
    try:
        driver.get(f"{server}/advise?model=digits_cnn")
        flow.wait_for_page(driver)
        assert flow.run_button(driver).is_enabled()
        flow.set_number(driver, "Latency target (ms, end to end)", "-5")
        assert "Latency target: input should be greater than 0" in _body(driver)
        assert not flow.run_button(driver).is_enabled()
        assert "Run is blocked: fix Latency target" in _body(driver)
        flow.set_number(driver, "Latency target (ms, end to end)", "5")
        assert flow.run_button(driver).is_enabled()

        flow.click_option(driver, "Custom")
        flow.set_number(driver, "Uplink (Mbit/s)", "0")
        flow.set_number(driver, "Round-trip time (ms)", "-1")
        body = _body(driver)
        assert "Uplink (Mbit/s): input should be greater than 0" in body
        assert "Round-trip time (ms): input should be greater than or equal to 0" in body
        assert not flow.run_button(driver).is_enabled()
        flow.set_number(driver, "Uplink (Mbit/s)", "10")
        flow.set_number(driver, "Round-trip time (ms)", "20")
        assert flow.run_button(driver).is_enabled()
    finally:
        driver.quit()


def test_a_run_survives_a_widget_change_and_shows_the_decision(server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = flow.make_driver(tmp_path / "chromium", height=1300)
    try:
        # a click 1 s into the run used to remove the status box and lose the run
        flow.run_advice_page(
            driver, server, model="digits_cnn", during=lambda d: flow.click_option(d, "Fastest")
        )
        card = driver.find_element(By.CSS_SELECTOR, ".st-key-summary_card").text
        assert "Recommended:" in card
        assert "Accuracy drop (pp vs FP32)" in card
        assert "against the 10 ms target: margin" in card and "noise band" in card
        assert "results are for earlier inputs" in _body(driver)  # the radio changed: stale
        png = tmp_path / "advise.png"
        assert driver.save_screenshot(str(png))
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000

        stored = card.split("Stored as run", 1)[1].split()  # shown in the card
        run_id = stored[0]
        driver.get(f"{server}/runs")
        flow.wait_for_page(driver)
        WebDriverWait(driver, 60).until(lambda d: run_id in _body(d))
        assert "digits_cnn" in _body(driver)
    finally:
        driver.quit()
