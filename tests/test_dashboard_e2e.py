"""End to end: the real dashboard on loopback, driven by Debian's headless Chromium, opens the demo's
deal_stage incident (what broke, what it did, what to do), saves a screenshot, acknowledges it and follows its link
to the audit trail of the records it damaged; asks a page's first request for the key; and shows Markdown planted
in events as text (no remote image fetched, no planted link).

Set AGENTWATCH_SCREENSHOTS=docs/screenshots to also write the screenshot the README shows.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.ui import WebDriverWait

from agentwatch.app.dashboard_launch import start_dashboard
from agentwatch.checks.engine import incident_store
from agentwatch.core.home import Home
from agentwatch.dashboards.escape import JOINER
from agentwatch.schemas.incidents import Incident
from tests.browser_support import headless_chromium
from tests.dashboard_support import sql, store_hostile
from tests.test_serve_checks import free_port

START_TIMEOUT_S = 60.0
PAGE_TIMEOUT_S = 60.0


@contextmanager
def serving(home: Home, no_key: bool = False) -> Iterator[str]:
    """The real dashboard (`streamlit run` through agentwatch's launcher) on a free loopback port; its URL.
    `no_key`: opened without a key, as `agentwatch demo` does."""
    port = free_port()
    process = start_dashboard(home, port=port, quiet=True, no_key=no_key)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/_stcore/health", timeout=2).text == "ok":
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, "the dashboard process exited"
            time.sleep(0.3)
        else:
            raise AssertionError(f"the dashboard did not answer on {url} within {START_TIMEOUT_S} s")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def home_copy(demo_home: Home, tmp_path: Path, config_extra: str = "") -> Home:
    shutil.copytree(demo_home.root, tmp_path / "home")
    home = Home.resolve(tmp_path / "home")
    config = home.root / "agentwatch.yaml"
    config.write_text(config.read_text() + config_extra)
    return home


@pytest.fixture
def dashboard(demo_home: Home, tmp_path: Path) -> Iterator[tuple[Home, str]]:
    """The real dashboard on a copy of the demo home, as `agentwatch demo` serves it (no key)."""
    home = home_copy(demo_home, tmp_path)
    with serving(home, no_key=True) as url:
        yield home, url


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    with headless_chromium("--force-device-scale-factor=1", "--lang=en-US") as driver:
        yield driver


BAD_READS = """((agent_id = 'lead-router' AND action = 'lead.route')
    OR (agent_id = 'enrichment-agent' AND action = 'lead.enrich'))
    AND ts >= ? AND ts <= ? AND resource_type = 'lead' AND inputs ->> '$.deal_stage' IS NULL
    AND inputs ->> '$.opportunity_id' IS NOT NULL"""


def damaged_leads(home: Home, spike: Incident) -> set[str]:
    """The leads the demo's null spike damaged, counted here from the definition: read by lead-router's lead.route
    or enrichment-agent's lead.enrich with deal_stage null and opportunity_id set, from its start to its last
    firing."""
    return {lead for (lead,) in sql(home, """
        SELECT DISTINCT resource_id FROM actions
        WHERE ((agent_id = 'lead-router' AND action = 'lead.route')
               OR (agent_id = 'enrichment-agent' AND action = 'lead.enrich'))
          AND ts >= ? AND ts <= ? AND resource_type = 'lead' AND inputs ->> '$.deal_stage' IS NULL
          AND inputs ->> '$.opportunity_id' IS NOT NULL""", spike.started_at, spike.last_fired_at)}


def test_open_the_deal_stage_incident_acknowledge_it_and_screenshot(dashboard, browser, tmp_path) -> None:
    """The notification link `/?incident=<id>` opens the rename incident: what broke (the old and new field), what
    it did (the leads acted on with bad input, as many as counted here independently), what to do (the fields:
    mapping) and its effects; the screenshot is saved; clicking Acknowledge stores the acknowledgement and the page
    shows it; the audit link opens the audit trail of exactly the actions taken on bad input (their count, those on
    a damaged lead found by id, not enrichment-agent's crm.update_field writes on it, and none on an undamaged
    lead)."""
    home, url = dashboard
    store = incident_store(home)
    (rename,) = [i for i in store.list() if i.check == "schema.field_renamed"]
    (spike,) = [i for i in store.list() if i.check == "quality.null_spike"]
    assert rename.status == "open"
    leads = damaged_leads(home, spike)
    browser.set_window_size(1440, 2400)  # tall enough for the four answers and the signal chart
    browser.get(f"{url}/?incident={rename.id}")
    wait = WebDriverWait(browser, PAGE_TIMEOUT_S)
    ack = wait.until(ready.element_to_be_clickable((By.CSS_SELECTOR, ".st-key-ack_button button")))
    # The page draws top to bottom: the linked effects come after the chart.
    wait.until(lambda driver: rename.effects[0] in driver.find_element(By.TAG_NAME, "body").text)
    body = browser.find_element(By.TAG_NAME, "body").text
    assert rename.id in body and "Lead.deal_stage was renamed opportunity_stage" in body  # what broke
    assert "Agents reading it: enrichment-agent, lead-router" in body
    assert f"{len(leads):,} leads acted on with bad input since it began" in body  # what it did
    assert "routed to nurture (route_to=nurture)" in body
    assert "fields: {deal_stage: Lead.opportunity_stage}" in body  # what to do
    assert "update the agents (enrichment-agent, lead-router) to read opportunity_stage" in body
    time.sleep(2.5)  # let the charts finish drawing before the picture
    shot = tmp_path / "incident.png"
    assert browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 50_000  # a rendered page, not a blank one
    if os.environ.get("AGENTWATCH_SCREENSHOTS"):
        target = Path(os.environ["AGENTWATCH_SCREENSHOTS"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, target / "incident.png")

    ack.click()
    deadline = time.monotonic() + PAGE_TIMEOUT_S
    while store.get(rename.id).status != "acknowledged" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert store.get(rename.id).status == "acknowledged"
    wait.until(lambda driver: "is now acknowledged" in driver.find_element(By.TAG_NAME, "body").text)

    # the bad-input reads, and the writes that carried out their decisions (same agent, lead and trace)
    selected = dict(sql(home, f"""
        WITH bad AS (SELECT * FROM actions WHERE {BAD_READS})
        SELECT event_id, resource_id FROM bad
        UNION
        SELECT w.event_id, w.resource_id FROM actions w JOIN bad b
          ON b.after IS NULL AND b.trace_id IS NOT NULL AND w.trace_id = b.trace_id AND w.agent_id = b.agent_id
         AND w.resource_type = b.resource_type AND w.resource_id = b.resource_id
        WHERE w.after IS NOT NULL""", spike.started_at, spike.last_fired_at))
    reads = sum(1 for _ in sql(home, f"SELECT 1 FROM actions WHERE {BAD_READS}", spike.started_at,
                                  spike.last_fired_at))
    actions = len(selected)
    link = browser.find_element(By.CSS_SELECTOR, f'a[href$="audit?incident={rename.id}"]')
    assert (f"See these {reads:,} actions on {len(leads):,} records in the audit trail, with the "
            f"{actions - reads:,} writes that carried out their decisions") in link.text
    link.click()
    note = f"Showing {rename.id}: the {actions:,} lead.enrich and lead.route actions"
    wait.until(lambda driver: note in driver.find_element(By.TAG_NAME, "body").text)
    assert browser.current_url.endswith(f"/audit?incident={rename.id}")
    wait.until(lambda driver: f"Matching events\n{actions:,}" in driver.find_element(By.TAG_NAME, "body").text)
    ((untouched,),) = sql(home, "SELECT min(resource_id) FROM actions WHERE resource_type = 'lead' AND ts >= ? "
                          "AND NOT list_contains(?, resource_id)", rename.started_at, sorted(leads))
    # a damaged lead that enrichment-agent's crm.update_field also wrote: that write is not a bad-input action
    ((written,),) = sql(home, "SELECT min(resource_id) FROM actions WHERE resource_type = 'lead' AND ts >= ? AND "
                        "ts <= ? AND agent_id = 'enrichment-agent' AND action = 'crm.update_field' AND "
                        "list_contains(?, resource_id)", spike.started_at, spike.last_fired_at, sorted(leads))
    assert written is not None
    for lead in (sorted(leads)[0], untouched, written, sorted(leads)[-1]):  # each page differs from the one before
        box = wait.until(ready.element_to_be_clickable((By.CSS_SELECTOR, ".st-key-audit_resource_id input")))
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys(lead, Keys.ENTER)
        if lead == untouched:  # a lead the rename did not damage is not in the selection
            wait.until(lambda driver: "Nothing matches these filters" in driver.find_element(By.TAG_NAME, "body").text)
            continue
        own = sum(1 for on in selected.values() if on == lead)
        # its bad-input reads and their writes alone: for `written`, its crm.update_field writes would count too
        wait.until(lambda driver, n=own: f"Matching events\n{n:,}" in driver.find_element(By.TAG_NAME, "body").text)


def test_a_page_url_as_first_request_still_asks_for_the_key(demo_home, tmp_path, browser) -> None:
    """On a fresh server with require_key, a browser whose first request is `/audit` gets the key prompt, not
    the audit trail (pages live outside Streamlit's auto-served `pages/` folder)."""
    home = home_copy(demo_home, tmp_path, "dashboard: {require_key: true}\n")
    with serving(home) as url:
        browser.get(f"{url}/audit")
        WebDriverWait(browser, PAGE_TIMEOUT_S).until(
            lambda driver: "API key" in driver.find_element(By.TAG_NAME, "body").text)
        body = browser.find_element(By.TAG_NAME, "body").text
        assert "Rollback plan" not in body and "Showing the latest" not in body


class Counting(BaseHTTPRequestHandler):
    """Counts every request (an image the browser fetches, a link it follows) and answers a 1x1 GIF."""

    requests: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.requests.append(self.path)
        body = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"
        self.send_response(200)
        self.send_header("Content-Type", "image/gif")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def trap() -> Iterator[tuple[str, list[str]]]:
    """A loopback HTTP server recording every request it gets: its URL and the paths requested."""
    Counting.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Counting)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", Counting.requests
    finally:
        server.shutdown()
        server.server_close()


def test_planted_markdown_fetches_no_image_and_plants_no_link(home, trap, browser) -> None:
    """Events, incidents, a pause and a silence carry remote images, links and Streamlit directives pointing at a
    loopback server in every text field; every page shows them as text: no request reaches the server, no <img>
    or <a> in the page points at it, and the literal text is on the page."""
    trap_url, requests = trap
    bad = store_hostile(home, trap_url)
    wait = WebDriverWait(browser, PAGE_TIMEOUT_S)

    def body() -> str:  # as a person reads it: without the invisible joiners that keep URLs from linking
        return browser.find_element(By.TAG_NAME, "body").text.replace(JOINER, "")

    def nothing_planted(page: str) -> None:
        planted = browser.find_elements(By.CSS_SELECTOR, f'img[src^="{trap_url}"], a[href^="{trap_url}"]')
        assert not planted, f"{page}: {[e.get_attribute('outerHTML') for e in planted]}"

    with serving(home, no_key=True) as url:
        for path, ready_text in [("?incident=INC-1", "Linked incidents"), ("?incident=INC-2", "Linked incidents"),
                                 ("agents", "Latest incidents"), ("schema", "snapshots of"),
                                 ("notifications", "Expire"), ("audit", "Rollback plan")]:
            browser.get(f"{url}/{path}")
            wait.until(lambda driver, want=ready_text: want in body())
            nothing_planted(path)
            if path != "audit":  # the audit trail's values are in tables until an event is picked
                assert "[click](" in body(), path  # the planted link as the text it is
        picker = wait.until(ready.element_to_be_clickable((By.CSS_SELECTOR, ".st-key-audit_event input")))
        picker.click()
        picker.send_keys("crm.update_field")
        picker.send_keys("\n")
        wait.until(lambda driver: "rationale:" in body())
        assert f"rationale: {bad}" in body()  # the value as written, not rendered
        nothing_planted("audit event")
    assert requests == [], f"the browser fetched planted URLs: {requests}"
