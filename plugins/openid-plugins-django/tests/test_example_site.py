"""The example site (examples/django-site) end to end in headless Chromium: a first sign-in
with registration pre-filled from SREG/AX, sign-out, and a second sign-in straight into the
account, against the development OP, all started by the example's one command.

Needs Debian's ``chromium`` and ``chromium-driver`` (``bash scripts/install-chromium``);
under CI=true their absence is a failure, elsewhere a skip.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.error import URLError
from urllib.request import urlopen

import pytest

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "django-site"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
#: Bound on the site's start and on each page load (a hung server fails the test).
PATIENCE = 60.0

pytestmark = pytest.mark.browser


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def browser_binaries() -> tuple[str, str]:
    chromium = shutil.which("chromium")
    driver = shutil.which("chromedriver")
    if chromium and driver:
        return chromium, driver
    message = "chromium and chromedriver are not installed (bash scripts/install-chromium)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def example_site(tmp_path: Path) -> Iterator[str]:
    """The example's ``manage.py devserver`` on free ports, with its database in tmp_path."""
    port, op_port = free_port(), free_port()
    env = dict(os.environ, EXAMPLE_SITE_DB=str(tmp_path / "example.sqlite3"))
    # The example is its own project: none of this test process's Django settings.
    env.pop("DJANGO_SETTINGS_MODULE", None)
    log = (tmp_path / "devserver.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "manage.py", "devserver", "--port", str(port), "--op-port", str(op_port)],
        cwd=EXAMPLE,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + PATIENCE
        while True:
            try:
                with urlopen(f"{url}/login/", timeout=5):
                    break
            except (URLError, ConnectionError):
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(
                        "the example site did not start:\n"
                        + (tmp_path / "devserver.log").read_text(errors="replace")
                    )
                time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


@pytest.fixture
def chrome() -> Iterator[object]:
    chromium, driver_path = browser_binaries()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="openid-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(PATIENCE)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_login_registration_logout_and_second_login(example_site: str, chrome) -> None:
    from selenium.webdriver.common.by import By

    def text(css: str) -> str:
        return chrome.find_element(By.CSS_SELECTOR, css).text

    def arrive_at(path: str) -> None:
        """Wait for the redirects (site -> OP -> site) to end at ``path``."""
        from selenium.common.exceptions import TimeoutException
        from selenium.webdriver.support.ui import WebDriverWait

        try:
            WebDriverWait(chrome, PATIENCE).until(lambda d: d.current_url == example_site + path)
        except TimeoutException:
            body = chrome.find_element(By.TAG_NAME, "body").text
            pytest.fail(f"stuck at {chrome.current_url} instead of {path}:\n{body}")

    def sign_in() -> None:
        chrome.get(f"{example_site}/login/")
        hints = chrome.find_elements(By.CSS_SELECTOR, "main p code")
        identity = hints[0].text  # the development OP's alice
        assert identity.endswith("/id/alice")
        chrome.find_element(By.NAME, "openid").send_keys(identity)
        chrome.find_element(By.ID, "sign-in").click()  # -> OP -> back to the site

    sign_in()
    # A new claim: the registration form, pre-filled from the OP's SREG and AX values.
    arrive_at("/register/")
    assert text("#claim").endswith("/id/alice")
    field = {
        name: chrome.find_element(By.NAME, name).get_attribute("value")
        for name in ("username", "email", "first_name", "last_name")
    }
    assert field["username"] == "alice"
    assert field["email"] == "alice@example.com"
    assert field["first_name"]  # from AX (namePerson/first) or the SREG full name
    chrome.find_element(By.ID, "register").click()

    arrive_at("/settings/")
    assert text("#whoami") == "alice"
    assert "/id/alice" in text("#claims")

    chrome.find_element(By.ID, "logout").click()
    arrive_at("/")
    assert text("#login-link") == "Sign in"

    sign_in()  # the linked claim now signs alice straight in
    arrive_at("/")
    assert text("#whoami") == "alice"
    assert text("#greeting").startswith("Hello")
