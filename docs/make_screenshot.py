"""Screenshot of the Advise page with results, for the README (docs/advise.png).

Starts `streamlit run app/streamlit_app.py` on 127.0.0.1 at a free port, drives headless
Chromium (Debian's `chromium` and `chromium-driver`) through selenium: opens the Advise page
on the digits CNN, runs the advice, waits for the results and saves a PNG of the summary
card and the Plans tab at 1400 px. The
browser test (tests/test_browser.py) runs the same flow through these functions.

    .venv/bin/python docs/make_screenshot.py [-o docs/advise.png]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "app" / "streamlit_app.py"
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    port: int, env: dict[str, str] | None = None, log: Path | None = None, timeout: float = 90
) -> subprocess.Popen:
    """`streamlit run` the app on 127.0.0.1:port; returns once /_stcore/health answers ok."""
    from app.commands.appcmd import streamlit_command

    cmd = streamlit_command("127.0.0.1", port, "--server.fileWatcherType", "none")
    out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 - closed by the caller
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {proc.returncode}; see {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return proc
        except OSError:
            time.sleep(0.5)
    stop_server(proc)
    raise TimeoutError(f"streamlit did not answer on port {port} within {timeout:.0f} s")


def stop_server(proc: subprocess.Popen) -> None:
    """Stop the server started by `start_server` (by its PID), killing it if it lingers."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


def chromium_paths() -> tuple[str, str] | None:
    """(chromium binary, chromedriver) from PATH, or None when either is missing."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def make_driver(user_data_dir: Path, width: int = 1400, height: int = 1000):
    """Headless Chromium through selenium, with a throw-away profile folder."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    paths = chromium_paths()
    if paths is None:
        raise RuntimeError(
            "chromium and chromedriver are needed: apt-get install -y chromium chromium-driver"
        )
    opts = webdriver.ChromeOptions()
    opts.binary_location = paths[0]
    for flag in (
        *CHROMIUM_FLAGS,
        f"--user-data-dir={user_data_dir}",
        f"--window-size={width},{height}",
    ):
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service(paths[1]), options=opts)


def wait_for_page(driver, timeout: float = 120) -> None:
    """Until the page's script has run (its title is drawn) and no rerun is pending."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(lambda d: d.find_elements(By.TAG_NAME, "h1"))
    WebDriverWait(driver, timeout).until(
        lambda d: not d.find_elements(By.CSS_SELECTOR, "[data-testid='stStatusWidget']")
    )


def set_number(driver, label: str, value: str) -> None:
    """Type `value` into the number field labelled `label` and commit it (Enter)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    field = driver.find_element(By.CSS_SELECTOR, f"input[aria-label='{label}']")
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(Keys.BACKSPACE, value, Keys.ENTER)
    time.sleep(0.5)
    wait_for_page(driver)


def click_option(driver, text: str) -> None:
    """Click the radio option showing `text`."""
    from selenium.webdriver.common.by import By

    driver.find_element(
        By.XPATH, f"//div[@role='radiogroup']//label[.//p[normalize-space()='{text}']]"
    ).click()
    time.sleep(0.5)
    wait_for_page(driver)


def run_button(driver, timeout: float = 120):
    """The Advise page's Run button, once the page has drawn it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    xpath = "//button[.//p[normalize-space()='Run advice']]"
    return WebDriverWait(driver, timeout).until(lambda d: d.find_element(By.XPATH, xpath))


def run_advice_page(
    driver, base_url: str, model: str = "digits_cnn", timeout: float = 600, during=None
) -> None:
    """Open the Advise page on a zoo model, run the advice, wait for the results.

    The advice runs in the background: `during(driver)`, when given, is called once the
    page shows the running job (to interact with the page mid-run). Raises AssertionError
    when the page shows an error or an exception instead of results.
    """
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{base_url}/advise?model={model}")
    wait = WebDriverWait(driver, timeout)
    run = wait.until(
        ec.element_to_be_clickable((By.XPATH, "//button[.//p[normalize-space()='Run advice']]"))
    )
    time.sleep(1.0)  # let the first script run settle so the click is not lost in a rerun
    run.click()
    if during is not None:
        wait.until(
            lambda d: d.find_elements(
                By.XPATH, "//*[contains(normalize-space(), 'Running the advisor on')]"
            )
        )
        during(driver)

    def done(d) -> bool:
        problems = d.find_elements(
            By.CSS_SELECTOR, "[data-testid='stException'], [data-testid='stAlertContentError']"
        )
        if problems:
            raise AssertionError("the page shows an error: " + problems[0].text[:500])
        heads = d.find_elements(By.XPATH, "//h3[contains(normalize-space(), 'Ranked plans')]")
        return bool(heads) and bool(d.find_elements(By.CSS_SELECTOR, "[data-testid='stDataFrame']"))

    wait.until(done)
    heading = driver.find_element(By.XPATH, "//h2[contains(normalize-space(), 'Results')]")
    driver.execute_script("arguments[0].scrollIntoView({block: 'start'});", heading)
    time.sleep(2.0)  # charts (vega-lite) draw after the table appears


def screenshot(out: Path, model: str = "digits_cnn") -> Path:
    """The whole flow: server, browser, advice, PNG at `out`; everything stopped afterwards."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edgedl-shot-") as tmp:
        proc = start_server(free_port(), log=Path(tmp) / "streamlit.log")
        port = proc.args[proc.args.index("--server.port") + 1]
        driver = None
        try:
            driver = make_driver(Path(tmp) / "chromium", width=1400, height=1300)
            run_advice_page(driver, f"http://127.0.0.1:{port}", model=model)
            driver.save_screenshot(str(out))
        finally:
            if driver is not None:
                driver.quit()
            stop_server(proc)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--out", type=Path, default=ROOT / "docs" / "advise.png")
    parser.add_argument("--model", default="digits_cnn", help="zoo model id")
    args = parser.parse_args()
    print(screenshot(args.out, args.model))


if __name__ == "__main__":
    main()
