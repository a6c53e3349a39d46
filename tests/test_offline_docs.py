"""What users expect of a server on a machine without internet: /docs (Swagger UI) and /redoc (ReDoc) of a real
``agentwatch serve`` render in headless Chromium with every host name but the server's unresolvable, loading only
what the server itself serves; and ``agentwatch --version``."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import version

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from agentwatch.core.api_keys import KeyStore
from agentwatch.core.home import Home
from tests.browser_support import headless_chromium
from tests.live_support import Server, free_port, stop

PAGE_TIMEOUT_S = 60.0
ENDPOINTS = ("/v1/actions", "/v1/outcomes", "/v1/schema-snapshots", "/v1/traces", "/metrics", "/healthz")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("offline-docs")
    home = Home.resolve(root / "home")
    started = Server(home, free_port(), KeyStore(home).create("read")[1], root / "server.log").start()
    yield started
    assert started.process is not None
    stop(started.process)


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    """Headless Chromium with the network off: every host name but 127.0.0.1 fails to resolve."""
    with headless_chromium("--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1") as driver:
        yield driver


def local_references(server: Server, page: str) -> list[str]:
    """The src and href of the page's HTML, each asserted to be a path on the server itself."""
    html = httpx.get(f"{server.url}{page}", timeout=30).text
    references = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    assert references, f"{page} references no asset"
    assert not re.search(r"https?://", html), f"{page} names an outside URL"
    assert all(ref.startswith("/") and not ref.startswith("//") for ref in references), references
    for ref in references:  # every asset the page needs is served, without a key
        assert httpx.get(f"{server.url}{ref}", timeout=30).status_code == 200, ref
    return references


def loaded_from(browser: webdriver.Chrome) -> set[str]:
    """The origins of every resource the page asked for (failed ones included)."""
    urls = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    return {re.sub(r"^(\w+://[^/]+).*", r"\1", url) for url in [browser.current_url, *urls]}


def test_swagger_ui_renders_the_endpoints_offline(server: Server, browser: webdriver.Chrome) -> None:
    """/docs loads Swagger UI from the server and lists the API's endpoints."""
    assert any(ref.endswith(".js") for ref in local_references(server, "/docs"))
    browser.get(f"{server.url}/docs")
    wait = WebDriverWait(browser, PAGE_TIMEOUT_S)
    wait.until(lambda driver: len(driver.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")) >= len(ENDPOINTS))
    paths = {element.text.replace("\u200b", "") for element in
             browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
    assert set(ENDPOINTS) <= paths
    assert "agentwatch collector" in browser.find_element(By.TAG_NAME, "body").text
    assert loaded_from(browser) == {server.url}


def test_redoc_renders_the_endpoints_offline(server: Server, browser: webdriver.Chrome) -> None:
    """/redoc loads ReDoc from the server and shows the operations with their paths."""
    assert any(ref.endswith(".js") for ref in local_references(server, "/redoc"))
    browser.get(f"{server.url}/redoc")
    wait = WebDriverWait(browser, PAGE_TIMEOUT_S)
    wait.until(lambda driver: "Send OpenTelemetry traces" in driver.find_element(By.TAG_NAME, "body").text)
    html = browser.page_source
    for endpoint in ENDPOINTS:
        assert endpoint in html, endpoint
    assert loaded_from(browser) == {server.url}


def test_version_prints_the_installed_version() -> None:
    """`agentwatch --version` prints `agentwatch <version>` of the installed package and exits 0."""
    done = subprocess.run([sys.executable, "-c", "from agentwatch.app.cli import main; main()", "--version"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"agentwatch {version('agentwatch')}\n"
