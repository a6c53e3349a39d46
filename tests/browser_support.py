"""Debian's headless Chromium driven by selenium, as the browser tests use it (`make test` installs it)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
BASE_ARGUMENTS = ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1440,1000",
                  "--disable-gpu")


@contextmanager
def headless_chromium(*arguments: str) -> Iterator[webdriver.Chrome]:
    """A headless Chromium with the base arguments and `arguments`; quit at the end."""
    assert Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists(), \
        "Debian's chromium and chromium-driver are needed: `make test` installs them (scripts/install-browser)"
    options = Options()
    options.binary_location = CHROMIUM
    for argument in (*BASE_ARGUMENTS, *arguments):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
