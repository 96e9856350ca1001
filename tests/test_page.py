"""The seed's page in a real headless browser (Debian's chromium and chromedriver):
clicking "Step" three times walks b3 along the seed's path 1.57 -> 2.19 -> 2.44."""

import os
import shutil
from pathlib import Path

import pytest
from test_service import Server

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SCREENSHOT = os.environ.get("JAXFIT_PAGE_SCREENSHOT")

pytestmark = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() and Path(DRIVER).exists()),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver); .ci/run installs them",
)


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # never let selenium fetch a browser or driver
    options = Options()
    options.binary_location = CHROMIUM
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
        "--window-size=1400,1000",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def page(browser):
    server = Server()
    browser.get(server.url + "/")
    yield browser
    server.stop()


def wait_for(driver, predicate, timeout=30):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(lambda d: predicate(d))


def test_three_steps_follow_the_seed(page):
    from selenium.webdriver.common.by import By

    shown = lambda: page.find_element(By.ID, "b3-value").text  # noqa: E731
    assert shown() == "0"
    expected = ["1.57", "2.19", "2.44"]
    for i, want in enumerate(expected, start=1):
        page.find_element(By.ID, "step").click()
        wait_for(page, lambda d, i=i: d.find_element(By.ID, "step-count").text == str(i))
        assert shown() == want
    rows = page.find_elements(By.CSS_SELECTOR, "#steps tbody tr")
    assert [r.find_elements(By.TAG_NAME, "td")[2].text for r in rows] == ["-15.655", "-6.262", "-2.5048"]
    assert page.find_element(By.ID, "error").text == ""


def test_keyboard_runs_to_convergence_and_sweep(page):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    run = page.find_element(By.ID, "run")
    run.send_keys(Keys.ENTER)  # buttons work from the keyboard
    wait_for(page, lambda d: d.find_element(By.ID, "status-value").text == "converged")
    assert page.find_element(By.ID, "b3-value").text == "2.61"
    page.find_element(By.ID, "sweep").click()
    wait_for(page, lambda d: "fits:" in d.find_element(By.ID, "sweep-out").text)
    assert "201 fits: 201 converged" in page.find_element(By.ID, "sweep-out").text
    if SCREENSHOT:
        page.execute_script("window.scrollTo(0, 0)")
        page.save_screenshot(SCREENSHOT)


def test_the_models_page_fits_a_served_model_and_draws_it(browser, tmp_path):
    import numpy as np
    from scipy.optimize import curve_fit
    from selenium.webdriver.common.by import By
    from test_service import DECAY

    (tmp_path / "decay_model.py").write_text(DECAY)
    server = Server("--model", "decay_model:predict", cwd=tmp_path)
    try:
        browser.get(server.url + "/models")
        wait_for(browser, lambda d: d.find_elements(By.ID, "start-a"))
        x = np.arange(8.0)
        y = 2.5 * np.exp(-0.6 * x) + 0.4 + 0.02 * np.sin(7 * x)
        area = browser.find_element(By.ID, "data")
        area.clear()
        area.send_keys("\n".join(f"{a:g}, {float(b)!r}" for a, b in zip(x, y)))
        browser.find_element(By.ID, "fit").click()
        # the first fit of this length compiles on the server
        wait_for(browser, lambda d: d.find_element(By.ID, "status").text == "converged", timeout=180)
        ref, _ = curve_fit(lambda x, a, k, c: a * np.exp(-k * x) + c, x, y, [1.0, 1.0, 1.0])
        for name, want in zip("akc", ref):
            got = float(browser.find_element(By.ID, f"value-{name}").text)
            assert got == pytest.approx(want, rel=1e-5), name
        green = browser.execute_script(
            "const d = document.getElementById('plot').getContext('2d').getImageData(0, 0, 900, 460).data;"
            "let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i + 1] > 120 && d[i] < 120 && d[i + 3] > 0) n++;"
            "return n;"
        )
        assert green > 500  # the curve and its band are drawn
        assert browser.find_element(By.ID, "error").text == ""
    finally:
        server.stop()
