"""The docs page (/docs) in a real browser: Debian's headless Chromium, driven by selenium,
loads it from a real gunicorn with nothing reachable but 127.0.0.1; every operation of
/openapi.json is on it, and a request sent from its "Try it out" form comes back as the
envelope. The test saves a screenshot of the page, and prints where."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

from chassis.web.apidocs import ASSETS, VERSION
from harness import programs
from harness.processes import Gunicorn, base_env, get

# Debian's chromium and chromium-driver (.ci/run installs them); another browser of the
# Chromium family and its driver where these name them (the GitHub workflow's Chrome).
# A CI runner with Google Chrome instead of Debian's Chromium names it (ci.yml).
CHROMIUM = os.environ.get("KIT_CHROMIUM", "")
CHROMEDRIVER = os.environ.get("KIT_CHROMEDRIVER", "")
# Every wait in the browser is bounded; Swagger UI renders in about a second.
WAIT_S = 20


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Gunicorn]:
    """The service (app.wsgi:app) under gunicorn, on a SQLite file of its own."""
    logs = tmp_path / "gunicorn"
    logs.mkdir()
    env = base_env(DATABASE_URL=f"sqlite:///{tmp_path / 'app.db'}", WEB_CONCURRENCY="1")
    server = Gunicorn(logs, env).start()
    yield server
    server.stop()


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    """Headless Chromium that can reach 127.0.0.1 only: every other host resolves to
    nothing, and any other address goes to a proxy that refuses (loopback bypasses it)."""
    if CHROMIUM and CHROMEDRIVER:
        chromium, chromedriver = CHROMIUM, CHROMEDRIVER
    else:
        chromium, chromedriver = programs.require("chromium", "chromedriver")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",  # root in CI; the page is our own
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        "--window-size=1280,4000",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--proxy-server=http://127.0.0.1:9",
    ):
        options.add_argument(argument)
    # Every request the page makes, from the DevTools protocol's Network events.
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(chromedriver))
    try:
        yield driver
    finally:
        driver.quit()


def requested_urls(driver: webdriver.Chrome) -> list[str]:
    """The URL of every request the page sent so far."""
    urls = []
    entries = driver.get_log("performance")  # type: ignore[no-untyped-call]
    for entry in entries:
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def test_the_docs_page_shows_every_operation_and_tries_one(
    browser: webdriver.Chrome, served: Gunicorn, tmp_path: Path
) -> None:
    """Each documented operation is on the page; "Try it out" on /healthz gets the
    envelope, its tracking id the header's; nothing was fetched from anywhere else."""
    base = f"http://127.0.0.1:{served.port}"
    document = json.loads(get(served.port, "/openapi.json")[2])
    documented = {
        (method.upper(), path) for path, methods in document["paths"].items() for method in methods
    }
    wait = WebDriverWait(browser, WAIT_S)
    browser.get(f"{base}/docs")
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".opblock")) >= len(documented))
    blocks = {
        (
            block.find_element(By.CSS_SELECTOR, ".opblock-summary-method").text,
            block.find_element(By.CSS_SELECTOR, ".opblock-summary-path").get_attribute("data-path"),
        ): block
        for block in browser.find_elements(By.CSS_SELECTOR, ".opblock")
    }
    assert set(blocks) == documented

    health = blocks["GET", "/healthz"]
    health.find_element(By.CSS_SELECTOR, ".opblock-summary-control").click()
    wait.until(expected_conditions.element_to_be_clickable((By.CSS_SELECTOR, ".try-out__btn")))
    health.find_element(By.CSS_SELECTOR, ".try-out__btn").click()
    wait.until(expected_conditions.element_to_be_clickable((By.CSS_SELECTOR, ".execute")))
    health.find_element(By.CSS_SELECTOR, ".execute").click()
    live = ".live-responses-table .response"
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f"{live} .response-col_description pre"))
    row = health.find_element(By.CSS_SELECTOR, live)
    status = row.find_element(By.CSS_SELECTOR, ".response-col_status").text
    body = json.loads(row.find_element(By.CSS_SELECTOR, ".response-col_description pre").text)
    headers = row.find_element(By.CSS_SELECTOR, ".response-col_description").text

    screenshot = tmp_path / "docs.png"
    browser.save_screenshot(str(screenshot))
    print(f"screenshot of the docs page: {screenshot}")

    assert status == "200"
    assert list(body) == ["code", "msg", "data", "tracking_id"]
    assert (body["code"], body["data"]) == (200, {"status": "alive"})
    assert f"x-tracking-id: {body['tracking_id']}" in headers
    # data: URLs (Swagger UI's icons) are inline, not fetched.
    urls = [url for url in requested_urls(browser) if not url.startswith("data:")]
    assert [url for url in urls if not url.startswith(f"{base}/")] == []
    assert {url.split("?")[0].rsplit("/", 1)[-1] for url in urls} >= {*ASSETS, "openapi.json"}


def test_the_page_and_its_files_are_served_by_the_app(client: FlaskClient) -> None:
    """HTML that names only this server's URLs; Swagger UI's files from the package, with
    the package version in their URL so a browser may keep them."""
    page = client.get("/docs")
    assert (page.status_code, page.mimetype) == (200, "text/html")
    html = page.get_data(as_text=True)
    assert "http" not in html
    for name in ASSETS:
        assert f"/docs/{name}?v={VERSION}" in html
        asset = client.get(f"/docs/{name}?v={VERSION}")
        assert asset.status_code == 200
        assert len(asset.data) > 100_000
        assert asset.headers["Cache-Control"] == "public, max-age=86400"
    missing: Any = client.get("/docs/missing.js").json
    assert (missing["code"], missing["data"]) == (404, None)
