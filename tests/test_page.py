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
